// The matrix product of MatMulSpec, shared by matmul.comp (B in fp32) and matmul_half.comp (B,
// the frozen weight, stored in 16 bits). The including shader declares how B is read:
//   float loadB(uint i)   element i of B, as fp32;
//   vec4 loadB4(uint i)   elements 4i .. 4i+3 of B, as fp32.
// C[z1,z2][m,n] = alpha * sum_k A[z1,z2][m,k] B[z1,z2][k,n] (+ C[z1,z2][m,n] when accumulating),
// every operand addressed through element strides (MatMulSpec.cs describes the vocabulary).
// A workgroup owns a BM x BN tile of C for one (z1, z2) at a time, each invocation TM x TN of it.
// Sums run over k in order, in fp32, in both variants and whatever B's storage:
//
// BK = 0, streamed (CPU devices): each invocation reads its operands straight from memory and owns
// TM consecutive rows and TN consecutive columns. lavapipe executes a load whose address differs
// between invocations as a loop over the SIMD lanes, costing the same for one float as for four,
// so operands contiguous and 4-aligned along k, m or n are fetched as vec4 (A_VEC, B_VEC, chosen
// in MatMulKernel.VectorLoads). Its shared memory is ordinary memory behind emulated barriers:
// staging would cost more than it saves.
//
// BK > 0, staged (GPUs): the workgroup copies BK-deep slices of its A and B tiles to shared memory,
// so each global element is read once per workgroup instead of once per invocation, and each
// invocation owns rows ty + i*LY and columns tx + j*LX, so that neighbouring invocations read
// neighbouring shared-memory words.
layout(local_size_y_id = 1) in;
layout(constant_id = 2) const uint TM = 4;
layout(constant_id = 3) const uint TN = 4;
layout(constant_id = 4) const uint BK = 0;
// 0: one float at a time; 1: vec4 along k; 2: vec4 along m (A) or n (B). Streamed variant only.
layout(constant_id = 5) const uint A_VEC = 0;
layout(constant_id = 6) const uint B_VEC = 0;

const uint LX = gl_WorkGroupSize.x;
const uint LY = gl_WorkGroupSize.y;
const uint BM = LY * TM;
const uint BN = LX * TN;
// Rows of the staged tiles are padded by one word: the k-fastest fill then writes with an odd
// stride, which keeps the threads of a warp on distinct shared-memory banks.
const uint SA_STRIDE = BM + 1;
const uint SB_STRIDE = BN + 1;
shared float sa[BK > 0 ? BK * SA_STRIDE : 1];
shared float sb[BK > 0 ? BK * SB_STRIDE : 1];

layout(std430, binding = 0) readonly buffer BufA { float a[]; };
// The same A viewed as vec4s, for the vectorized fetches.
layout(std430, binding = 0) readonly buffer BufA4 { vec4 a4[]; };
layout(std430, binding = 2) buffer BufC { float c[]; };
layout(push_constant) uniform Push {
    uint M, N, K, batch1, batch2;
    uint aOffset, aStrideB1, aStrideB2, aStrideM, aStrideK;
    uint bOffset, bStrideB1, bStrideB2, bStrideK, bStrideN;
    uint cOffset, cStrideB1, cStrideB2, cStrideM;
    float alpha;
    uint accumulate;
} pc;

void main() {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint tileM = gl_WorkGroupID.y * BM;
    const uint tileN = gl_WorkGroupID.x * BN;

    // Batches beyond the device's z-dimension limit wrap round; z is uniform per workgroup, so
    // the barriers inside stay in uniform control flow.
    for (uint z = gl_WorkGroupID.z; z < pc.batch1 * pc.batch2; z += gl_NumWorkGroups.z) {
        const uint z1 = z / pc.batch2;
        const uint z2 = z % pc.batch2;
        const uint aBase = pc.aOffset + z1 * pc.aStrideB1 + z2 * pc.aStrideB2;
        const uint bBase = pc.bOffset + z1 * pc.bStrideB1 + z2 * pc.bStrideB2;

        float acc[TM * TN];
        for (uint i = 0; i < TM * TN; i++) acc[i] = 0.0;

        if (BK == 0) {
            // Rows and columns past the edge are clamped to the last valid one (the last whole
            // group of four for vec4 fetches along m or n) rather than branched around: the loop
            // stays branch-free and their results are never stored.
            const uint row0 = tileM + ty * TM;
            const uint col0 = tileN + tx * TN;
            uint aRow[TM];
            for (uint i = 0; i < TM; i++) aRow[i] = aBase + min(row0 + i, pc.M - 1) * pc.aStrideM;
            uint bCol[TN];
            for (uint j = 0; j < TN; j++) bCol[j] = bBase + min(col0 + j, pc.N - 1) * pc.bStrideN;
            uint k = 0;
            for (; k + 4 <= pc.K; k += 4) {
                float fa[TM * 4];
                if (A_VEC == 1) {
                    for (uint i = 0; i < TM; i++) {
                        const vec4 v = a4[(aRow[i] + k) >> 2];
                        fa[i * 4] = v.x; fa[i * 4 + 1] = v.y; fa[i * 4 + 2] = v.z; fa[i * 4 + 3] = v.w;
                    }
                } else if (A_VEC == 2) {
                    for (uint i = 0; i < TM; i += 4) {
                        const uint g = aBase + min(row0 + i, pc.M - 4);
                        for (uint kk = 0; kk < 4; kk++) {
                            const vec4 v = a4[(g + (k + kk) * pc.aStrideK) >> 2];
                            fa[i * 4 + kk] = v.x; fa[(i + 1) * 4 + kk] = v.y; fa[(i + 2) * 4 + kk] = v.z; fa[(i + 3) * 4 + kk] = v.w;
                        }
                    }
                } else {
                    for (uint i = 0; i < TM; i++)
                        for (uint kk = 0; kk < 4; kk++) fa[i * 4 + kk] = a[aRow[i] + (k + kk) * pc.aStrideK];
                }
                float fb[4 * TN];
                if (B_VEC == 1) {
                    for (uint j = 0; j < TN; j++) {
                        const vec4 v = loadB4((bCol[j] + k) >> 2);
                        fb[j] = v.x; fb[TN + j] = v.y; fb[2 * TN + j] = v.z; fb[3 * TN + j] = v.w;
                    }
                } else if (B_VEC == 2) {
                    for (uint j = 0; j < TN; j += 4) {
                        const uint g = bBase + min(col0 + j, pc.N - 4);
                        for (uint kk = 0; kk < 4; kk++) {
                            const vec4 v = loadB4((g + (k + kk) * pc.bStrideK) >> 2);
                            fb[kk * TN + j] = v.x; fb[kk * TN + j + 1] = v.y; fb[kk * TN + j + 2] = v.z; fb[kk * TN + j + 3] = v.w;
                        }
                    }
                } else {
                    for (uint kk = 0; kk < 4; kk++)
                        for (uint j = 0; j < TN; j++) fb[kk * TN + j] = loadB(bCol[j] + (k + kk) * pc.bStrideK);
                }
                for (uint kk = 0; kk < 4; kk++)
                    for (uint j = 0; j < TN; j++)
                        for (uint i = 0; i < TM; i++) acc[i * TN + j] = fma(fa[i * 4 + kk], fb[kk * TN + j], acc[i * TN + j]);
            }
            for (; k < pc.K; k++) {
                float av[TM];
                for (uint i = 0; i < TM; i++) av[i] = a[aRow[i] + k * pc.aStrideK];
                for (uint j = 0; j < TN; j++) {
                    const float bv = loadB(bCol[j] + k * pc.bStrideK);
                    for (uint i = 0; i < TM; i++) acc[i * TN + j] = fma(av[i], bv, acc[i * TN + j]);
                }
            }
        } else {
            const uint tid = gl_LocalInvocationIndex;
            // Fill order follows whichever index is contiguous in memory, so consecutive
            // invocations read consecutive addresses (k-fastest for A·Bᵀ weights, else m/n).
            const bool aAlongK = pc.aStrideK == 1;
            const bool bAlongK = pc.bStrideK == 1;
            for (uint k0 = 0; k0 < pc.K; k0 += BK) {
                for (uint e = tid; e < BK * BM; e += LX * LY) {
                    const uint kk = aAlongK ? e % BK : e / BM;
                    const uint mm = aAlongK ? e / BK : e % BM;
                    const uint m = tileM + mm, k = k0 + kk;
                    float v = 0.0;
                    if (m < pc.M && k < pc.K) v = a[aBase + m * pc.aStrideM + k * pc.aStrideK];
                    sa[kk * SA_STRIDE + mm] = v;
                }
                for (uint e = tid; e < BK * BN; e += LX * LY) {
                    const uint kk = bAlongK ? e % BK : e / BN;
                    const uint nn = bAlongK ? e / BK : e % BN;
                    const uint n = tileN + nn, k = k0 + kk;
                    float v = 0.0;
                    if (n < pc.N && k < pc.K) v = loadB(bBase + k * pc.bStrideK + n * pc.bStrideN);
                    sb[kk * SB_STRIDE + nn] = v;
                }
                barrier();
                for (uint kk = 0; kk < BK; kk++) {
                    float av[TM];
                    for (uint i = 0; i < TM; i++) av[i] = sa[kk * SA_STRIDE + ty + i * LY];
                    for (uint j = 0; j < TN; j++) {
                        const float bv = sb[kk * SB_STRIDE + tx + j * LX];
                        for (uint i = 0; i < TM; i++) acc[i * TN + j] = fma(av[i], bv, acc[i * TN + j]);
                    }
                }
                // The next slice overwrites what slower invocations may still be reading.
                barrier();
            }
        }

        const uint cBase = pc.cOffset + z1 * pc.cStrideB1 + z2 * pc.cStrideB2;
        for (uint i = 0; i < TM; i++) {
            const uint m = BK == 0 ? tileM + ty * TM + i : tileM + ty + i * LY;
            if (m >= pc.M) break;
            for (uint j = 0; j < TN; j++) {
                const uint n = BK == 0 ? tileN + tx * TN + j : tileN + tx + j * LX;
                if (n >= pc.N) break;
                const uint at = cBase + m * pc.cStrideM + n;
                float v = pc.alpha * acc[i * TN + j];
                if (pc.accumulate != 0) v += c[at];
                c[at] = v;
            }
        }
    }
}
