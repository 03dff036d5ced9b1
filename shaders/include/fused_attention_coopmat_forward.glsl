// fused_attention.comp on the matrix units (include/fused_attention_coopmat.glsl): per (b, h),
//   o[i] = Σ_j dropout(softmax_j(q[i]·k[j] + bias[h,i,j], masked))·v[j],  lse[i] = log Σ_j exp(score)
// A workgroup owns ROWS queries; per block of BLOCK keys, each subgroup forms its 16 x BLOCK
// scores (q·kᵀ), folds them into its rows' running maximum and sums, writes the (dropped)
// probabilities as fp16 and multiplies them by the block's values; its invocations add that to
// their share of the output after rescaling it by exp(m_old - m_new), the online softmax of
// fused_attention.comp. The sums of exp stay each invocation's own over its columns (they share
// the maximum) until the end.
// sa: the queries [ROWS][SD], then each subgroup's scratch: 16 rows of its scores, then of its
//     P·V, as fp32, the probabilities as fp16 between them.
// sb: the block's keys [BLOCK][SD], then its values [BLOCK][SD].
#define SCRATCH (BLOCK / 16 * TS_BLOCK > D / 16 * TS_D ? BLOCK / 16 * TS_BLOCK : D / 16 * TS_D)
#define SA_LENGTH (ROWS * SD / 4 + WARPS * SCRATCH)
#define SB_LENGTH (2 * BLOCK * SD / 4)
#include "fused_attention_coopmat.glsl"

layout(std430, binding = 4) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 5) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 6) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 7) writeonly buffer O { float o[]; };
layout(std430, binding = 8) writeonly buffer LogSumExp { float lse[]; };
layout(std430, binding = 4) readonly buffer Qh4 { u16vec4 qh4[]; };
layout(std430, binding = 5) readonly buffer Kh4 { u16vec4 kh4[]; };
layout(std430, binding = 6) readonly buffer Vh4 { u16vec4 vh4[]; };
layout(std430, binding = 7) writeonly buffer Oh { uint16_t oh[]; };

uvec2 qHalves(uint at) { return ACT_HALVES(q, Q_STORAGE, at); }
uvec2 kHalves(uint at) { return ACT_HALVES(k, K_STORAGE, at); }
uvec2 vHalves(uint at) { return ACT_HALVES(v, V_STORAGE, at); }

// Each part's share of a row's maximum (then of its sum), for the row's other parts: row r of
// subgroup w, part p at (w·16 + r)·PARTS + p.
shared float sRow[WARPS * 16 * PARTS];

void main() {
    const uint warp = cmSubgroup(), lane = cmLane(), part = lane / 16;
    const uint i0 = gl_WorkGroupID.x * ROWS;
    const uint keyEnd = visibleKeys(min(i0 + ROWS, pc.queryLength));
    const uint scratch = ROWS * SD / 4 + warp * SCRATCH;
    const uint cols = BLOCK / PARTS, c0 = part * cols;
    const uint outCols = D / PARTS, d0 = part * outCols;

    // (b, h) pairs beyond the device's y limit wrap round; uniform per workgroup.
    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        // The previous pair's last products have read the queries (the emulation's operands are
        // read where they lie), and its last reductions sRow.
        barrier();
        STAGE_ROWS(sa, 0, qHalves, pc.queryRows, pc.queryLength, b, h, i0, ROWS)
        barrier();
        // The subgroup's queries stay in its registers for every block.
        CM_FRAG_A qf[D / 16];
        [[unroll]] for (uint kk = 0; kk < D / 16; kk++) cmLoadA(qf[kk], (warp * 16 * SD + kk * 16) / 4, SD / 4, false);

        // Per row of the invocation's: its share of the output, the running maximum and sum.
        float acc[LANE_ROWS][D / PARTS];
        float m[LANE_ROWS], l[LANE_ROWS];
        [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
            [[unroll]] for (uint d = 0; d < outCols; d++) acc[r][d] = 0.0;
            m[r] = NEG_INF;
            l[r] = 0.0;
        }

        for (uint j0 = 0; j0 < keyEnd; j0 += BLOCK) {
            const uint n = min(BLOCK, keyEnd - j0);
            // Every subgroup is done with the previous block's keys and values.
            barrier();
            STAGE_ROWS(sb, 0, kHalves, pc.keyRows, j0 + n, b, h, j0, BLOCK)
            STAGE_ROWS(sb, BLOCK * SD, vHalves, pc.keyRows, j0 + n, b, h, j0, BLOCK)
            barrier();

            [[unroll]] for (uint t = 0; t < BLOCK / 16; t++) {
                CM_ACC s = cmZero();
                [[unroll]] for (uint kk = 0; kk < D / 16; kk++) {
                    CM_FRAG_B fb;
                    // B[d][j] = k[j][d]: the staged keys read column-major.
                    cmLoadB(fb, (t * 16 * SD + kk * 16) / 4, SD / 4, true);
                    s = cmMulAdd(qf[kk], fb, s);
                }
                STAGE_TILE(s, scratch, t, TS_BLOCK);
            }
            subgroupSync();

            float s[LANE_ROWS][BLOCK / PARTS];
            float mBlock[LANE_ROWS];
            [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
                // Rows past the last query compute on the last one and store nothing.
                const uint row = laneRow(lane, r), i = min(i0 + warp * 16 + row, pc.queryLength - 1);
                mBlock[r] = m[r];
                [[unroll]] for (uint c = 0; c < cols; c++) {
                    const uint col = c0 + c;
                    s[r][c] = col < n ? score(staged(scratch, TS_BLOCK, row, col), b, h, i, j0 + col) : NEG_INF;
                    mBlock[r] = max(mBlock[r], s[r][c]);
                }
                sRow[(warp * 16 + row) * PARTS + part] = mBlock[r];
            }
            // Also: every score is read before the probabilities overwrite the scratch.
            subgroupSync();
            float rescale[LANE_ROWS];
            [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
                const uint row = laneRow(lane, r), i = min(i0 + warp * 16 + row, pc.queryLength - 1);
                [[unroll]] for (uint p = 0; p < PARTS; p++) mBlock[r] = max(mBlock[r], sRow[(warp * 16 + row) * PARTS + p]);
                // While every key so far is masked the state stays empty (and exp(-inf - -inf) unformed).
                rescale[r] = 1.0;
                if (mBlock[r] != NEG_INF) {
                    rescale[r] = exp(m[r] - mBlock[r]);
                    l[r] *= rescale[r];
                    m[r] = mBlock[r];
                }
                [[unroll]] for (uint c = 0; c < cols; c += 4) {
                    vec4 kept4;
                    [[unroll]] for (uint u = 0; u < 4; u++) {
                        const float p = s[r][c + u] == NEG_INF ? 0.0 : exp(s[r][c + u] - m[r]);
                        l[r] += p;
                        kept4[u] = p != 0.0 && kept(b, h, i, j0 + c0 + c + u) ? p : 0.0;
                    }
                    putHalves(scratch, row, c0 + c, kept4);
                }
            }
            subgroupSync();

            CM_ACC pv[D / 16];
            [[unroll]] for (uint t = 0; t < D / 16; t++) {
                pv[t] = cmZero();
                [[unroll]] for (uint kk = 0; kk < BLOCK; kk += 16) {
                    CM_FRAG_A fa;
                    CM_FRAG_B fb;
                    cmLoadA(fa, scratch + kk / 4, SP / 4, false);
                    cmLoadB(fb, (BLOCK * SD + kk * SD + t * 16) / 4, SD / 4, false);
                    pv[t] = cmMulAdd(fa, fb, pv[t]);
                }
            }
            // The probabilities are read before the products overwrite them.
            subgroupSync();
            [[unroll]] for (uint t = 0; t < D / 16; t++) STAGE_TILE(pv[t], scratch, t, TS_D);
            subgroupSync();
            [[unroll]] for (uint r = 0; r < LANE_ROWS; r++)
                [[unroll]] for (uint d = 0; d < outCols; d++) acc[r][d] = fma(acc[r][d], rescale[r], staged(scratch, TS_D, laneRow(lane, r), d0 + d));
        }

        [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) sRow[(warp * 16 + laneRow(lane, r)) * PARTS + part] = l[r];
        subgroupSync();
        [[unroll]] for (uint r = 0; r < LANE_ROWS; r++) {
            const uint row = laneRow(lane, r), query = i0 + warp * 16 + row;
            float sum = 0.0;
            [[unroll]] for (uint p = 0; p < PARTS; p++) sum += sRow[(warp * 16 + row) * PARTS + p];
            if (query < pc.queryLength) {
                // Dropout's 1 / (1 - rate) (1 without dropout) folds into the normalisation.
                const float norm = sum > 0.0 ? pc.scale / sum : 0.0;
                const uint oBase = rowBase(b, pc.queryRows, query, h) + d0;
                [[unroll]] for (uint d = 0; d < outCols; d++) STORE_ACT(o, O_STORAGE, oBase + d, acc[r][d] * norm);
                if (part == 0) lse[bh * pc.queryLength + query] = m[r] == NEG_INF ? POS_INF : m[r] + log(sum);
            }
        }
    }
}
