// Fused T5 attention, in the manner of FlashAttention (Dao et al. 2022): per (b, h),
//   o[i] = Σ_j dropout(softmax_j(q[i]·k[j] + bias[h,i,j], masked))·v[j]   (no 1/sqrt(d) scaling)
// and lse[i] = log Σ_j exp(score[i,j]), without the [Lq, Lk] scores ever reaching memory.
// A workgroup takes one (b, h) and gl_WorkGroupSize.x consecutive queries, one per invocation,
// and streams over the keys and values BLOCK at a time (staged or not, see fused_attention.glsl).
// Each invocation scores its query against the block and folds it into a running maximum m, sum
// l and unnormalized output (online softmax: the old sum and output are rescaled by
// exp(m_old - m_new) once per block). A query with every key masked gets o = 0 and lse = +inf, so that the
// backward's exp(score - lse) is 0 for it rather than NaN.
// The kernel of fused_attention.comp (fp32 activations) and fused_attention_half.comp (q, k, v, o
// each fp32 or 16-bit, STORED_16BIT; include/fused_attention.glsl says why two builds).
#ifndef VKPROMPT_FUSED_ATTENTION_FORWARD_GLSL
#define VKPROMPT_FUSED_ATTENTION_FORWARD_GLSL
#include "common.glsl"
#include "fused_attention.glsl"

layout(std430, binding = 4) readonly buffer Q { float q[]; };
layout(std430, binding = 5) readonly buffer K { float k[]; };
layout(std430, binding = 6) readonly buffer V { float v[]; };
layout(std430, binding = 5) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 6) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 7) writeonly buffer O { float o[]; };
layout(std430, binding = 8) writeonly buffer LogSumExp { float lse[]; };
#ifdef STORED_16BIT
layout(std430, binding = 4) readonly buffer Qh { uint16_t qh[]; };
layout(std430, binding = 5) readonly buffer Kh { uint16_t kh[]; };
layout(std430, binding = 6) readonly buffer Vh { uint16_t vh[]; };
layout(std430, binding = 5) readonly buffer Kh4 { u16vec4 kh4[]; };
layout(std430, binding = 6) readonly buffer Vh4 { u16vec4 vh4[]; };
layout(std430, binding = 7) writeonly buffer Oh { uint16_t oh[]; };
#endif

shared float sk[STAGED ? BLOCK * D : 1];
shared float sv[STAGED ? BLOCK * D : 1];

// Elements d..d+3 of key (value) jj of the block whose first row starts at kBase.
vec4 key4(uint kBase, uint jj, uint d) {
    if (STAGED) return LOAD4(sk, jj * D + d, d);
    return FETCH_ACT4(k, K_STORAGE, kBase + jj * rowStride() + d, d);
}
vec4 value4(uint kBase, uint jj, uint d) {
    if (STAGED) return LOAD4(sv, jj * D + d, d);
    return FETCH_ACT4(v, V_STORAGE, kBase + jj * rowStride() + d, d);
}

void main() {
    const uint rowsPerGroup = gl_WorkGroupSize.x;
    const uint t = gl_LocalInvocationID.x;
    const uint i0 = gl_WorkGroupID.x * rowsPerGroup;
    // Invocations past the last query stage their share and meet every barrier; they compute on
    // the last query and store nothing.
    const uint i = min(i0 + t, pc.queryLength - 1);
    const uint keyEnd = visibleKeys(min(i0 + rowsPerGroup, pc.queryLength));

    // (b, h) pairs beyond the device's y limit wrap round; bh is uniform per workgroup, so the
    // barriers stay in uniform control flow.
    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        float qi[D], acc[D];
        const uint qBase = rowBase(b, pc.queryRows, i, h);
        FOR_D(d) {
            qi[d] = ACT(q, Q_STORAGE, qBase + d);
            acc[d] = 0.0;
        }
        float m = NEG_INF, l = 0.0;

        for (uint j0 = 0; j0 < keyEnd; j0 += BLOCK) {
            const uint n = min(BLOCK, keyEnd - j0);
            const uint kBase = rowBase(b, pc.keyRows, j0, h);
            if (STAGED) {
                for (uint e = t; e < n * D; e += rowsPerGroup) {
                    const uint at = kBase + e / D * rowStride() + e % D;
                    sk[e] = ACT(k, K_STORAGE, at);
                    sv[e] = ACT(v, V_STORAGE, at);
                }
                barrier();
            }

            // The block's scores, indexed only by unrolled loops (see FOR_D).
            float s[BLOCK];
            float mBlock = m;
            [[unroll]] for (uint jj = 0; jj < BLOCK; jj++) {
                s[jj] = NEG_INF;
                if (jj < n) {
                    float dot = 0.0;
                    FOR_D4(d) dot = dot4(qi, d, key4(kBase, jj, d), dot);
                    s[jj] = score(dot, b, h, i, j0 + jj);
                }
                mBlock = max(mBlock, s[jj]);
            }
            // While every key so far is masked the state stays empty (and exp(-inf - -inf) unformed).
            if (mBlock != NEG_INF) {
                const float rescale = exp(m - mBlock);
                l *= rescale;
                FOR_D(d) acc[d] *= rescale;
                [[unroll]] for (uint jj = 0; jj < BLOCK; jj++) {
                    if (s[jj] == NEG_INF) continue;
                    const float p = exp(s[jj] - mBlock);
                    l += p;
                    if (kept(b, h, i, j0 + jj))
                        FOR_D4(d) axpy4(acc, d, p, value4(kBase, jj, d));
                }
                m = mBlock;
            }
            // The next block overwrites what slower invocations may still be reading.
            if (STAGED) barrier();
        }

        if (i0 + t < pc.queryLength) {
            // Dropout's 1 / (1 - rate) (1 without dropout) folds into the normalisation.
            const float norm = l > 0.0 ? pc.scale / l : 0.0;
            const uint oBase = rowBase(b, pc.queryRows, i, h);
            FOR_D(d) STORE_ACT(o, O_STORAGE, oBase + d, acc[d] * norm);
            lse[bh * pc.queryLength + i] = m == NEG_INF ? POS_INF : m + log(l);
        }
    }
}

#endif
