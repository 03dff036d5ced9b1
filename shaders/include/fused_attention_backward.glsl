// Backward of fused_attention.comp, from the output gradient dO and the forward's o and
// logsumexp, recomputing the probabilities block by block instead of reading them:
//   P[i,j] = exp(score[i,j] - lse[i])            (0 for masked keys and fully masked queries)
//   dP[i,j] = keep[i,j]·scale · dO[i]·v[j]        (the gradient of the undropped P)
//   dS[i,j] = P[i,j]·(dP[i,j] - Δ[i]),  Δ[i] = dO[i]·o[i] = Σ_j P[i,j]·dP[i,j]
//   dq[i] = Σ_j dS[i,j]·k[j],  dk[j] = Σ_i dS[i,j]·q[i],  dv[j] = Σ_i keep[i,j]·scale·P[i,j]·dO[i]
// Two passes, so that every sum belongs to one invocation and no float is added atomically:
// PASS 0 gives each invocation a query and streams over blocks of keys and values (dq);
// PASS 1 gives each invocation a key and streams over blocks of queries and output gradients
// (dk, dv). Both recompute Δ from dO and o with the same arithmetic, so they need no scratch
// buffer and do not depend on each other.
// The kernel of fused_attention_backward.comp (fp32 activations) and
// fused_attention_backward_half.comp (q, k, v, o each fp32 or 16-bit, STORED_16BIT;
// include/fused_attention.glsl says why two builds). dO and the gradients are fp32 in both. Δ is
// formed from o as stored (rounded, where o is 16-bit): FusedAttentionReference.Backward given
// the same stored o forms the same Δ, and Δ = Σ_j P·dP holds for it up to that rounding.
#ifndef VKPROMPT_FUSED_ATTENTION_BACKWARD_GLSL
#define VKPROMPT_FUSED_ATTENTION_BACKWARD_GLSL
#include "common.glsl"
#include "fused_attention.glsl"

layout(constant_id = 4) const uint PASS = 0;

layout(std430, binding = 4) readonly buffer Q { float q[]; };
layout(std430, binding = 5) readonly buffer K { float k[]; };
layout(std430, binding = 6) readonly buffer V { float v[]; };
layout(std430, binding = 7) readonly buffer O { float o[]; };
layout(std430, binding = 8) readonly buffer LogSumExp { float lse[]; };
layout(std430, binding = 9) readonly buffer DO { float dO[]; };
layout(std430, binding = 4) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 5) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 6) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 7) readonly buffer O4 { vec4 o4[]; };
layout(std430, binding = 9) readonly buffer DO4 { vec4 dO4[]; };
#ifdef STORED_16BIT
layout(std430, binding = 4) readonly buffer Qh { uint16_t qh[]; };
layout(std430, binding = 5) readonly buffer Kh { uint16_t kh[]; };
layout(std430, binding = 6) readonly buffer Vh { uint16_t vh[]; };
layout(std430, binding = 7) readonly buffer Oh { uint16_t oh[]; };
layout(std430, binding = 4) readonly buffer Qh4 { u16vec4 qh4[]; };
layout(std430, binding = 5) readonly buffer Kh4 { u16vec4 kh4[]; };
layout(std430, binding = 6) readonly buffer Vh4 { u16vec4 vh4[]; };
layout(std430, binding = 7) readonly buffer Oh4 { u16vec4 oh4[]; };
#endif
// dq in pass 0, dk in pass 1.
layout(std430, binding = 10) writeonly buffer DQK { float dqk[]; };
// dv in pass 1; pass 0 binds dq here too and writes only through binding 10.
layout(std430, binding = 11) writeonly buffer DV { float dv[]; };

// Pass 0 stages keys and values, pass 1 queries and output gradients with their lse and Δ.
shared float sa[STAGED ? BLOCK * D : 1];
shared float sb[STAGED ? BLOCK * D : 1];
shared float sLse[STAGED && PASS == 1 ? BLOCK : 1];
shared float sDelta[STAGED && PASS == 1 ? BLOCK : 1];

// Elements d..d+3 of row r of the block whose first row starts at base: keys and values in
// pass 0, queries and output gradients in pass 1.
vec4 a4(uint base, uint r, uint d) {
    if (STAGED) return LOAD4(sa, r * D + d, d);
    const uint at = base + r * rowStride() + d;
    return PASS == 0 ? FETCH_ACT4(k, K_STORAGE, at, d) : FETCH_ACT4(q, Q_STORAGE, at, d);
}
vec4 b4(uint base, uint r, uint d) {
    if (STAGED) return LOAD4(sb, r * D + d, d);
    const uint at = base + r * rowStride() + d;
    return PASS == 0 ? FETCH_ACT4(v, V_STORAGE, at, d) : FETCH4(dO, dO4, at, d);
}

// Δ of query i: dO[i]·o[i], read from memory by both passes so they agree on it exactly.
float delta(uint b, uint h, uint i) {
    const uint at = rowBase(b, pc.queryRows, i, h);
    float s = 0.0;
    FOR_D4(d) {
        const vec4 g = FETCH4(dO, dO4, at + d, d), y = FETCH_ACT4(o, O_STORAGE, at + d, d);
        s = fma(g.x, y.x, s);
        if (d + 1 < D) s = fma(g.y, y.y, s);
        if (d + 2 < D) s = fma(g.z, y.z, s);
        if (d + 3 < D) s = fma(g.w, y.w, s);
    }
    return s;
}

void queryGradients() {
    const uint rowsPerGroup = gl_WorkGroupSize.x;
    const uint t = gl_LocalInvocationID.x;
    const uint i0 = gl_WorkGroupID.x * rowsPerGroup;
    // As in the forward: invocations past the last query work on it and store nothing.
    const uint i = min(i0 + t, pc.queryLength - 1);
    const uint keyEnd = visibleKeys(min(i0 + rowsPerGroup, pc.queryLength));

    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        float qi[D], gi[D], acc[D];
        const uint qBase = rowBase(b, pc.queryRows, i, h);
        FOR_D(d) {
            qi[d] = ACT(q, Q_STORAGE, qBase + d);
            gi[d] = dO[qBase + d];
            acc[d] = 0.0;
        }
        const float di = delta(b, h, i);
        const float lsei = lse[bh * pc.queryLength + i];

        for (uint j0 = 0; j0 < keyEnd; j0 += BLOCK) {
            const uint n = min(BLOCK, keyEnd - j0);
            const uint kBase = rowBase(b, pc.keyRows, j0, h);
            if (STAGED) {
                for (uint e = t; e < n * D; e += rowsPerGroup) {
                    const uint at = kBase + e / D * rowStride() + e % D;
                    sa[e] = ACT(k, K_STORAGE, at);
                    sb[e] = ACT(v, V_STORAGE, at);
                }
                barrier();
            }
            for (uint jj = 0; jj < BLOCK; jj++) {
                if (jj >= n) break;
                float dot = 0.0;
                FOR_D4(d) dot = dot4(qi, d, a4(kBase, jj, d), dot);
                const float p = exp(score(dot, b, h, i, j0 + jj) - lsei);
                // Masked keys (and underflowed ones) contribute exactly nothing.
                if (p == 0.0) continue;
                float dp = 0.0;
                if (kept(b, h, i, j0 + jj))
                    FOR_D4(d) dp = dot4(gi, d, b4(kBase, jj, d), dp);
                const float ds = p * (dp * pc.scale - di);
                FOR_D4(d) axpy4(acc, d, ds, a4(kBase, jj, d));
            }
            if (STAGED) barrier();
        }

        if (i0 + t < pc.queryLength)
            FOR_D(d) dqk[qBase + d] = acc[d];
    }
}

void keyGradients() {
    const uint rowsPerGroup = gl_WorkGroupSize.x;
    const uint t = gl_LocalInvocationID.x;
    const uint j0 = gl_WorkGroupID.x * rowsPerGroup;
    const uint j = min(j0 + t, pc.keyLength - 1);
    const uint queryStart = firstQuerySeeing(j0);

    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        float kj[D], vj[D], dk[D], dvj[D];
        const uint kBase = rowBase(b, pc.keyRows, j, h);
        FOR_D(d) {
            kj[d] = ACT(k, K_STORAGE, kBase + d);
            vj[d] = ACT(v, V_STORAGE, kBase + d);
            dk[d] = 0.0;
            dvj[d] = 0.0;
        }

        for (uint r0 = queryStart; r0 < pc.queryLength; r0 += BLOCK) {
            const uint n = min(BLOCK, pc.queryLength - r0);
            const uint qBase = rowBase(b, pc.queryRows, r0, h);
            if (STAGED) {
                for (uint e = t; e < n * D; e += rowsPerGroup) {
                    const uint at = qBase + e / D * rowStride() + e % D;
                    sa[e] = ACT(q, Q_STORAGE, at);
                    sb[e] = dO[at];
                }
                for (uint r = t; r < n; r += rowsPerGroup) {
                    sDelta[r] = delta(b, h, r0 + r);
                    sLse[r] = lse[bh * pc.queryLength + r0 + r];
                }
                barrier();
            }
            for (uint ii = 0; ii < BLOCK; ii++) {
                if (ii >= n) break;
                const uint i = r0 + ii;
                float dot = 0.0;
                FOR_D4(d) dot = dot4(kj, d, a4(qBase, ii, d), dot);
                const float lsei = STAGED ? sLse[ii] : lse[bh * pc.queryLength + i];
                const float p = exp(score(dot, b, h, i, j) - lsei);
                if (p == 0.0) continue;
                float dp = 0.0, pd = 0.0;
                if (kept(b, h, i, j)) {
                    FOR_D4(d) dp = dot4(vj, d, b4(qBase, ii, d), dp);
                    pd = p * pc.scale;
                }
                const float ds = p * (dp * pc.scale - (STAGED ? sDelta[ii] : delta(b, h, i)));
                FOR_D4(d) {
                    axpy4(dvj, d, pd, b4(qBase, ii, d));
                    axpy4(dk, d, ds, a4(qBase, ii, d));
                }
            }
            if (STAGED) barrier();
        }

        if (j0 + t < pc.keyLength)
            FOR_D(d) {
                dqk[kBase + d] = dk[d];
                dv[kBase + d] = dvj[d];
            }
    }
}

void main() {
    if (PASS == 0) queryGradients();
    else keyGradients();
}

#endif
