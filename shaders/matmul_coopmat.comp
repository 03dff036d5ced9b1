#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#include "common.glsl"

// C = alpha·A·B (+ C) of MatMulSpec on the matrix units (tensor cores): A fp32, B the frozen
// weight stored as fp16 or bf16, both rounded to fp16 for 16x16x16 products that accumulate in
// fp32, C fp32. Written against GL_NV_cooperative_matrix because the build's compiler (Debian
// 12's glslc, glslang 11) predates GL_KHR_cooperative_matrix; MatMulKernel picks it only where
// the device reports VK_NV_cooperative_matrix with that exact shape and types.
//
// fp16 holds the range of 16-bit weights, but an fp32 activation can exceed it (T5's feed-forward
// is known to); values are saturated at ±65504 as they are rounded, as Hugging Face's T5 clamps
// its fp16 hidden states, rather than becoming infinities.
//
// A workgroup of WARPS_M x WARPS_N subgroups owns a BM x BN tile of C, each subgroup TILES_M x
// TILES_N accumulators of 16 x 16. Slices BK deep of A (as [m][k]) and B (as [n][k], i.e. column
// major) are staged in shared memory in fp16; the fill walks whichever index is contiguous in
// memory so consecutive invocations read consecutive addresses. Rows are padded by 8 halves (16
// bytes): the cooperative loads need 16-byte aligned rows, and the odd multiple of 16 bytes
// spreads rows over the banks.
layout(constant_id = 1) const uint SUBGROUP = 32;
layout(constant_id = 2) const uint WARPS_M = 2;
layout(constant_id = 3) const uint WARPS_N = 2;
layout(constant_id = 4) const uint TILES_M = 2;
layout(constant_id = 5) const uint TILES_N = 2;
layout(constant_id = 6) const uint BK = 32;
layout(constant_id = 7) const uint WEIGHT_BF16 = 0;
// 1 where the operand's k stride is 1 (A: activations [m][k]; B: a Linear weight [n][k], A·Wᵀ);
// 2 where, besides, every row starts on a multiple of 4 elements, so the fill fetches four k at a
// time (MatMulKernel checks the alignment): a quarter of the load instructions, which is what a
// staged tile's fill is bound by.
layout(constant_id = 8) const uint A_ALONG_K = 1;
layout(constant_id = 9) const uint B_ALONG_K = 1;
#include "half.glsl"

const uint WG = gl_WorkGroupSize.x;
const uint BM = WARPS_M * TILES_M * 16;
const uint BN = WARPS_N * TILES_N * 16;
const uint SK = BK + 8;
shared float16_t sa[BM * SK];
shared float16_t sb[BN * SK];
// One 16 x 16 fp32 tile per subgroup, where accumulators pass on their way to C: a cooperative
// store cannot apply alpha, add to C or stop at the matrix's edge.
shared float sc[WARPS_M * WARPS_N * 256];

layout(std430, binding = 0) readonly buffer BufA { float a[]; };
layout(std430, binding = 0) readonly buffer BufA4 { vec4 a4[]; };
layout(std430, binding = 1) readonly buffer BufB { uint16_t b[]; };
layout(std430, binding = 1) readonly buffer BufB4 { u16vec4 b4[]; };
layout(std430, binding = 2) buffer BufC { float c[]; };
layout(push_constant) uniform Push {
    uint M, N, K, batch1, batch2;
    uint aOffset, aStrideB1, aStrideB2, aStrideM, aStrideK;
    uint bOffset, bStrideB1, bStrideB2, bStrideK, bStrideN;
    uint cOffset, cStrideB1, cStrideB2, cStrideM;
    float alpha;
    uint accumulate;
} pc;

float16_t toHalf(float v) { return float16_t(clamp(v, -65504.0, 65504.0)); }

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint warp = tid / SUBGROUP;
    const uint lane = tid % SUBGROUP;
    const uint warpM = warp / WARPS_N;
    const uint warpN = warp % WARPS_N;
    const uint tileM = gl_WorkGroupID.y * BM;
    const uint tileN = gl_WorkGroupID.x * BN;

    // Batches beyond the device's z-dimension limit wrap round; z is uniform per workgroup, so
    // the barriers inside stay in uniform control flow.
    for (uint z = gl_WorkGroupID.z; z < pc.batch1 * pc.batch2; z += gl_NumWorkGroups.z) {
        const uint z1 = z / pc.batch2;
        const uint z2 = z % pc.batch2;
        const uint aBase = pc.aOffset + z1 * pc.aStrideB1 + z2 * pc.aStrideB2;
        const uint bBase = pc.bOffset + z1 * pc.bStrideB1 + z2 * pc.bStrideB2;

        fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[TILES_M * TILES_N];
        for (uint t = 0; t < TILES_M * TILES_N; t++) acc[t] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);

        for (uint k0 = 0; k0 < pc.K; k0 += BK) {
            if (A_ALONG_K == 2) {
                for (uint e = tid; e < BM * BK / 4; e += WG) {
                    const uint kk = e % (BK / 4) * 4, mm = e / (BK / 4);
                    const uint m = tileM + mm, k = k0 + kk;
                    vec4 v = vec4(0.0);
                    if (m < pc.M && k + 3 < pc.K) v = a4[(aBase + m * pc.aStrideM + k) >> 2];
                    else if (m < pc.M)
                        for (uint i = 0; i < 4; i++) if (k + i < pc.K) v[i] = a[aBase + m * pc.aStrideM + k + i];
                    for (uint i = 0; i < 4; i++) sa[mm * SK + kk + i] = toHalf(v[i]);
                }
            } else {
                for (uint e = tid; e < BM * BK; e += WG) {
                    const uint kk = A_ALONG_K != 0 ? e % BK : e / BM;
                    const uint mm = A_ALONG_K != 0 ? e / BK : e % BM;
                    const uint m = tileM + mm, k = k0 + kk;
                    float v = 0.0;
                    if (m < pc.M && k < pc.K) v = a[aBase + m * pc.aStrideM + k * pc.aStrideK];
                    sa[mm * SK + kk] = toHalf(v);
                }
            }
            if (B_ALONG_K == 2) {
                for (uint e = tid; e < BN * BK / 4; e += WG) {
                    const uint kk = e % (BK / 4) * 4, nn = e / (BK / 4);
                    const uint n = tileN + nn, k = k0 + kk;
                    vec4 v = vec4(0.0);
                    if (n < pc.N && k + 3 < pc.K) v = widen(uvec4(b4[(bBase + n * pc.bStrideN + k) >> 2]));
                    else if (n < pc.N)
                        for (uint i = 0; i < 4; i++) if (k + i < pc.K) v[i] = widen(uint(b[bBase + n * pc.bStrideN + k + i]));
                    for (uint i = 0; i < 4; i++) sb[nn * SK + kk + i] = toHalf(v[i]);
                }
            } else {
                for (uint e = tid; e < BN * BK; e += WG) {
                    const uint kk = B_ALONG_K != 0 ? e % BK : e / BN;
                    const uint nn = B_ALONG_K != 0 ? e / BK : e % BN;
                    const uint n = tileN + nn, k = k0 + kk;
                    float v = 0.0;
                    if (n < pc.N && k < pc.K) v = widen(uint(b[bBase + k * pc.bStrideK + n * pc.bStrideN]));
                    sb[nn * SK + kk] = toHalf(v);
                }
            }
            barrier();
            for (uint kk = 0; kk < BK; kk += 16) {
                fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fa[TILES_M];
                fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fb[TILES_N];
                for (uint i = 0; i < TILES_M; i++)
                    coopMatLoadNV(fa[i], sa, ((warpM * TILES_M + i) * 16) * SK + kk, SK, false);
                for (uint j = 0; j < TILES_N; j++)
                    coopMatLoadNV(fb[j], sb, ((warpN * TILES_N + j) * 16) * SK + kk, SK, true);
                for (uint i = 0; i < TILES_M; i++)
                    for (uint j = 0; j < TILES_N; j++)
                        acc[i * TILES_N + j] = coopMatMulAddNV(fa[i], fb[j], acc[i * TILES_N + j]);
            }
            // The next slice overwrites what slower subgroups may still be reading.
            barrier();
        }

        const uint cBase = pc.cOffset + z1 * pc.cStrideB1 + z2 * pc.cStrideB2;
        for (uint i = 0; i < TILES_M; i++) {
            for (uint j = 0; j < TILES_N; j++) {
                coopMatStoreNV(acc[i * TILES_N + j], sc, warp * 256, 16, false);
                barrier();
                const uint m0 = tileM + (warpM * TILES_M + i) * 16;
                const uint n0 = tileN + (warpN * TILES_N + j) * 16;
                for (uint e = lane; e < 256; e += SUBGROUP) {
                    const uint m = m0 + e / 16, n = n0 + e % 16;
                    if (m < pc.M && n < pc.N) {
                        const uint at = cBase + m * pc.cStrideM + n;
                        float v = pc.alpha * sc[warp * 256 + e];
                        if (pc.accumulate != 0) v += c[at];
                        c[at] = v;
                    }
                }
                // The next accumulator reuses this subgroup's staging tile.
                barrier();
            }
        }
    }
}
