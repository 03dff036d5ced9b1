// fused_attention_backward.comp on the matrix units (include/fused_attention_coopmat.glsl):
// the same two passes, each sum belonging to one subgroup's accumulators, no float added
// atomically, the probabilities recomputed from the forward's logsumexp:
//   P = exp(score - lse),  dP = keep·scale·dO·vᵀ,  dS = P·(dP - Δ),  Δ[i] = dO[i]·o[i]
// PASS 0 (dq): the workgroup owns ROWS queries; per block of BLOCK keys each subgroup forms its
//   16 x BLOCK scores q·kᵀ and dO·vᵀ, writes dS as fp16 and adds dS·k to its dq.
// PASS 1 (dk, dv): the workgroup owns ROWS keys; per block of BLOCK queries each subgroup forms
//   k·qᵀ and v·dOᵀ (the transposed scores), writes dSᵀ and keep·scale·Pᵀ as fp16 and adds
//   them times q and dO to its dk and dv.
// sa: the workgroup's two operands [ROWS][SD] (q and dO, or k and v), then each subgroup's
//     scratch (SCRATCH): two areas of 16 x BLOCK floats, and at least 16 x D floats together for
//     the gradients staged on their way out, one at a time.
// sb: the block's two operands [BLOCK][SD] (k and v, or q and dO).
#define SCRATCH (BLOCK / 8 * TS_BLOCK > D / 16 * TS_D ? BLOCK / 8 * TS_BLOCK : D / 16 * TS_D)
#define SA_LENGTH (2 * ROWS * SD / 4 + WARPS * SCRATCH)
#define SB_LENGTH (2 * BLOCK * SD / 4)
#include "fused_attention_coopmat.glsl"

layout(constant_id = 6) const uint PASS = 0;

layout(std430, binding = 4) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 5) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 6) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 7) readonly buffer O4 { vec4 o4[]; };
layout(std430, binding = 8) readonly buffer LogSumExp { float lse[]; };
layout(std430, binding = 9) readonly buffer DO4 { vec4 dO4[]; };
// dq in pass 0, dk in pass 1.
layout(std430, binding = 10) writeonly buffer DQK { float dqk[]; };
// dv in pass 1; pass 0 binds dq here too and writes only through binding 10.
layout(std430, binding = 11) writeonly buffer DV { float dv[]; };
layout(std430, binding = 4) readonly buffer Qh4 { u16vec4 qh4[]; };
layout(std430, binding = 5) readonly buffer Kh4 { u16vec4 kh4[]; };
layout(std430, binding = 6) readonly buffer Vh4 { u16vec4 vh4[]; };
layout(std430, binding = 7) readonly buffer Oh4 { u16vec4 oh4[]; };

uvec2 qHalves(uint at) { return ACT_HALVES(q, Q_STORAGE, at); }
uvec2 kHalves(uint at) { return ACT_HALVES(k, K_STORAGE, at); }
uvec2 vHalves(uint at) { return ACT_HALVES(v, V_STORAGE, at); }
uvec2 dOHalves(uint at) { return toHalf(dO4[at >> 2]); }

// Pass 1's block of queries: their logsumexp and Δ.
shared float sLse[PASS == 1 ? BLOCK : 1];
shared float sDelta[PASS == 1 ? BLOCK : 1];

// Δ of query i, with the same arithmetic in both passes, from o as stored (rounded where o is
// 16-bit; FusedAttentionReference.Backward given the stored o forms the same Δ).
float delta(uint b, uint h, uint i) {
    const uint at = rowBase(b, pc.queryRows, i, h);
    float s = 0.0;
    [[unroll]] for (uint d = 0; d < D; d += 4) {
        const vec4 g = dO4[(at + d) / 4], y = ACT4(o, O_STORAGE, at + d);
        s = fma(g.x, y.x, s);
        s = fma(g.y, y.y, s);
        s = fma(g.z, y.z, s);
        s = fma(g.w, y.w, s);
    }
    return s;
}

// The two 16 x BLOCK products of a block for this subgroup, staged in its two areas: its rows of
// the workgroup's first operand against the block's first, and of the second against the second.
void blockScores(uint warp, uint area0, uint area1) {
    [[unroll]] for (uint t = 0; t < BLOCK / 16; t++) {
        CM_ACC s = cmZero(), g = cmZero();
        [[unroll]] for (uint kk = 0; kk < D; kk += 16) {
            CM_FRAG_A fa;
            CM_FRAG_B fb;
            // B[d][r] = block[r][d]: the staged rows read column-major.
            cmLoadA(fa, (warp * 16 * SD + kk) / 4, SD / 4, false);
            cmLoadB(fb, (t * 16 * SD + kk) / 4, SD / 4, true);
            s = cmMulAdd(fa, fb, s);
            cmLoadA(fa, (ROWS * SD + warp * 16 * SD + kk) / 4, SD / 4, false);
            cmLoadB(fb, (BLOCK * SD + t * 16 * SD + kk) / 4, SD / 4, true);
            g = cmMulAdd(fa, fb, g);
        }
        STAGE_TILE(s, area0, t, TS_BLOCK);
        STAGE_TILE(g, area1, t, TS_BLOCK);
    }
}

// acc + (the fp16 operand at `at`, 16 x BLOCK) · (columns t·16 .. t·16 + 15 of the block's operand
// starting at half `first`).
CM_ACC addProduct(CM_ACC acc, uint t, uint at, uint first) {
    [[unroll]] for (uint kk = 0; kk < BLOCK; kk += 16) {
        CM_FRAG_A fa;
        CM_FRAG_B fb;
        cmLoadA(fa, at + kk / 4, SP / 4, false);
        cmLoadB(fb, (first + kk * SD + t * 16) / 4, SD / 4, false);
        acc = cmMulAdd(fa, fb, acc);
    }
    return acc;
}

// Writes this invocation's share of row `row` of the subgroup's 16 x D gradient (staged at `at`)
// to row `pos`.
#define STORE_ROW(X, at, rowsPerEntry, pos, b, h, row, d0)                                       \
    {                                                                                             \
        const uint base = rowBase(b, rowsPerEntry, pos, h) + (d0);                               \
        [[unroll]] for (uint d = 0; d < D / PARTS; d++) X[base + d] = staged(at, TS_D, row, (d0) + d); \
    }

void main() {
    const uint tid = gl_LocalInvocationIndex, warp = cmSubgroup(), lane = cmLane(), part = lane / 16;
    const uint first = gl_WorkGroupID.x * ROWS;
    const uint area0 = 2 * ROWS * SD / 4 + warp * SCRATCH, area1 = area0 + BLOCK / 16 * TS_BLOCK;
    const uint cols = BLOCK / PARTS, c0 = part * cols, d0 = part * (D / PARTS);
    const uint ownLength = PASS == 0 ? pc.queryLength : pc.keyLength;
    const uint otherLength = PASS == 0 ? pc.keyLength : pc.queryLength;
    // Pass 0 streams the keys its queries see; pass 1 the queries that see its keys.
    const uint streamStart = PASS == 0 ? 0 : firstQuerySeeing(first);
    const uint streamEnd = PASS == 0 ? visibleKeys(min(first + ROWS, pc.queryLength)) : pc.queryLength;

    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        // The previous pair's last products have read the workgroup's operands.
        barrier();
        if (PASS == 0) {
            STAGE_ROWS(sa, 0, qHalves, pc.queryRows, pc.queryLength, b, h, first, ROWS)
            STAGE_ROWS(sa, ROWS * SD, dOHalves, pc.queryRows, pc.queryLength, b, h, first, ROWS)
        } else {
            STAGE_ROWS(sa, 0, kHalves, pc.keyRows, pc.keyLength, b, h, first, ROWS)
            STAGE_ROWS(sa, ROWS * SD, vHalves, pc.keyRows, pc.keyLength, b, h, first, ROWS)
        }
        // Pass 0's Δ and logsumexp of each of the invocation's rows (queries).
        float ownDelta[LANE_ROWS], ownLse[LANE_ROWS];
        [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
            // Rows past the last compute on the last one and store nothing.
            const uint mine = min(first + warp * 16 + laneRow(lane, r), ownLength - 1);
            ownDelta[r] = PASS == 0 ? delta(b, h, mine) : 0.0;
            ownLse[r] = PASS == 0 ? lse[bh * pc.queryLength + mine] : 0.0;
        }
        CM_ACC g0[D / 16], g1[D / 16];
        [[unroll]] for (uint t = 0; t < D / 16; t++) {
            g0[t] = cmZero();
            g1[t] = cmZero();
        }

        for (uint r0 = streamStart; r0 < streamEnd; r0 += BLOCK) {
            const uint n = min(BLOCK, streamEnd - r0);
            // Every subgroup is done with the previous block.
            barrier();
            if (PASS == 0) {
                STAGE_ROWS(sb, 0, kHalves, pc.keyRows, r0 + n, b, h, r0, BLOCK)
                STAGE_ROWS(sb, BLOCK * SD, vHalves, pc.keyRows, r0 + n, b, h, r0, BLOCK)
            } else {
                STAGE_ROWS(sb, 0, qHalves, pc.queryRows, r0 + n, b, h, r0, BLOCK)
                STAGE_ROWS(sb, BLOCK * SD, dOHalves, pc.queryRows, r0 + n, b, h, r0, BLOCK)
                for (uint r = tid; r < BLOCK; r += WG) {
                    sLse[r] = r < n ? lse[bh * pc.queryLength + r0 + r] : POS_INF;
                    sDelta[r] = r < n ? delta(b, h, r0 + r) : 0.0;
                }
            }
            barrier();
            blockScores(warp, area0, area1);
            subgroupSync();

            // Pass 0: row = query `mine`, column = key; pass 1: row = key `mine`, column = query.
            float ds[LANE_ROWS][BLOCK / PARTS], pd[LANE_ROWS][BLOCK / PARTS];
            [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
                const uint row = laneRow(lane, r), own = first + warp * 16 + row, mine = min(own, ownLength - 1);
                [[unroll]] for (uint c = 0; c < cols; c++) {
                    const uint col = c0 + c, other = min(r0 + col, otherLength - 1);
                    const uint i = PASS == 0 ? mine : other, j = PASS == 0 ? other : mine;
                    const float l = PASS == 0 ? ownLse[r] : sLse[col];
                    const bool inside = col < n && own < ownLength;
                    const float p = inside ? exp(score(staged(area0, TS_BLOCK, row, col), b, h, i, j) - l) : 0.0;
                    const bool keep = p != 0.0 && kept(b, h, i, j);
                    pd[r][c] = keep ? p * pc.scale : 0.0;
                    ds[r][c] = p * ((keep ? staged(area1, TS_BLOCK, row, col) * pc.scale : 0.0) - (PASS == 0 ? ownDelta[r] : sDelta[col]));
                }
            }
            // Every product is read before the operands overwrite them.
            subgroupSync();
            [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
                const uint row = laneRow(lane, r);
                [[unroll]] for (uint c = 0; c < cols; c += 4) {
                    putHalves(area0, row, c0 + c, vec4(ds[r][c], ds[r][c + 1], ds[r][c + 2], ds[r][c + 3]));
                    if (PASS == 1) putHalves(area1, row, c0 + c, vec4(pd[r][c], pd[r][c + 1], pd[r][c + 2], pd[r][c + 3]));
                }
            }
            subgroupSync();
            // Pass 0: dq += dS·k. Pass 1: dk += dSᵀ·q, dv += (keep·scale·Pᵀ)·dO.
            [[unroll]] for (uint t = 0; t < D / 16; t++) {
                g0[t] = addProduct(g0[t], t, area0, 0);
                if (PASS == 1) g1[t] = addProduct(g1[t], t, area1, BLOCK * SD);
            }
        }

        // The subgroup's products have read its scratch.
        subgroupSync();
        [[unroll]] for (uint t = 0; t < D / 16; t++) STAGE_TILE(g0[t], area0, t, TS_D);
        subgroupSync();
        [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
            const uint row = laneRow(lane, r), own = first + warp * 16 + row;
            if (own < ownLength) STORE_ROW(dqk, area0, PASS == 0 ? pc.queryRows : pc.keyRows, own, b, h, row, d0)
        }
        if (PASS == 1) {
            subgroupSync();
            [[unroll]] for (uint t = 0; t < D / 16; t++) STAGE_TILE(g1[t], area0, t, TS_D);
            subgroupSync();
            [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
                const uint row = laneRow(lane, r), own = first + warp * 16 + row;
                if (own < ownLength) STORE_ROW(dv, area0, pc.keyRows, own, b, h, row, d0)
            }
        }
    }
}
