#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require

// C = alpha·A·B (+ C) of MatMulSpec on the matrix units through GL_NV_cooperative_matrix2
// (VK_NV_cooperative_matrix2, VKPROMPT_MATRIX_UNITS=nv2): the whole BM x BN block of C is one
// workgroup-scope accumulator, and each BM x BK slice of A and BK x BN slice of B is loaded
// straight from its buffer by tensor addressing, so the driver, not this kernel, decides how the
// slices are staged through shared memory, how many are in flight and how the subgroups share the
// block. The subgroup-scope kernel (include/matmul_coopmat.glsl) does all of that by hand, and
// ran the large products of a t5-large step at a tenth of the units' own rate on an H100 and an
// H200 (docs/benchmarks.md); NVIDIA's drivers know their hardware's copy engines and pipelines,
// which portable GLSL cannot reach. A and B are fp16 here (A the copy to_half.comp makes, B a
// 16-bit weight stored as fp16, or the copy of an fp32 one), C and the sums fp32.
//
// Each operand is addressed as a 2-D tensor along its contiguous index: A as [M][K] where it is
// contiguous along k, else as [K][M] read through a transposing view, and B likewise as [N][K]
// (the weights of X·Wᵀ) or [K][N]. Slices that reach past M, N or K load through layouts that
// clamp, reading zeros there, and stores past M or N are dropped, so edges need no code of their
// own; whole slices load through unclamped layouts, the faster way.
// It has no epilogue (the push block's dropout fields are never set for it): a product
// with one takes the subgroup-scope kernel (DevicePlan.OnWorkgroupScope), whose element-wise
// stores know each element's index for the dropout mask.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint BM = 128;
layout(constant_id = 2) const uint BN = 128;
layout(constant_id = 3) const uint BK = 32;
// 1 where the operand is contiguous along k (A's rows, or B as the [N][K] weight of X·Wᵀ), 0
// where along m (A) or n (B).
layout(constant_id = 4) const uint A_ALONG_K = 1;
layout(constant_id = 5) const uint B_ALONG_K = 1;

layout(std430, binding = 0) readonly buffer BufA { float16_t a[]; };
layout(std430, binding = 1) readonly buffer BufB { float16_t b[]; };
layout(std430, binding = 2) buffer BufC { float c[]; };
#include "matmul_push.glsl"

#define ACC coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>
#define FRAG_A coopmat<float16_t, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA>
#define FRAG_B coopmat<float16_t, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB>
#define CLAMPED gl_CooperativeMatrixClampModeConstantNV

void main() {
    const uint tileM = gl_WorkGroupID.y * BM;
    const uint tileN = gl_WorkGroupID.x * BN;
    // Uniform per workgroup, as every workgroup-scope operation must be reached.
    const bool insideMN = tileM + BM <= pc.M && tileN + BN <= pc.N;

    tensorLayoutNV<2> la = createTensorLayoutNV(2);
    tensorLayoutNV<2, CLAMPED> laClamped = createTensorLayoutNV(2, CLAMPED);
    tensorLayoutNV<2> lb = createTensorLayoutNV(2);
    tensorLayoutNV<2, CLAMPED> lbClamped = createTensorLayoutNV(2, CLAMPED);
    tensorLayoutNV<2, CLAMPED> lc = createTensorLayoutNV(2, CLAMPED);
    if (A_ALONG_K != 0) {
        la = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(la, pc.M, pc.K), pc.aStrideM, 1);
        laClamped = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(laClamped, pc.M, pc.K), pc.aStrideM, 1);
    } else {
        la = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(la, pc.K, pc.M), pc.aStrideK, 1);
        laClamped = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(laClamped, pc.K, pc.M), pc.aStrideK, 1);
    }
    if (B_ALONG_K != 0) {
        lb = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(lb, pc.N, pc.K), pc.bStrideN, 1);
        lbClamped = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(lbClamped, pc.N, pc.K), pc.bStrideN, 1);
    } else {
        lb = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(lb, pc.K, pc.N), pc.bStrideK, 1);
        lbClamped = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(lbClamped, pc.K, pc.N), pc.bStrideK, 1);
    }
    lc = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(lc, pc.M, pc.N), pc.cStrideM, 1);
    tensorViewNV<2, false, 1, 0> transposed = createTensorViewNV(2, false, 1, 0);

    // Batches beyond the device's z-dimension limit wrap round (z is uniform per workgroup).
    for (uint z = gl_WorkGroupID.z; z < pc.batch1 * pc.batch2; z += gl_NumWorkGroups.z) {
        const uint z1 = z / pc.batch2;
        const uint z2 = z % pc.batch2;
        const uint aBase = pc.aOffset + z1 * pc.aStrideB1 + z2 * pc.aStrideB2;
        const uint bBase = pc.bOffset + z1 * pc.bStrideB1 + z2 * pc.bStrideB2;
        const uint cBase = pc.cOffset + z1 * pc.cStrideB1 + z2 * pc.cStrideB2;

        ACC acc = ACC(0.0);
        // Summing onto C with alpha 1 starts from C; other alphas add it at the end.
        if (pc.accumulate != 0 && pc.alpha == 1.0)
            coopMatLoadTensorNV(acc, c, cBase, sliceTensorLayoutNV(lc, tileM, BM, tileN, BN));

        for (uint k0 = 0; k0 < pc.K; k0 += BK) {
            FRAG_A fa;
            FRAG_B fb;
            if (insideMN && k0 + BK <= pc.K) {
                if (A_ALONG_K != 0) coopMatLoadTensorNV(fa, a, aBase, sliceTensorLayoutNV(la, tileM, BM, k0, BK));
                else coopMatLoadTensorNV(fa, a, aBase, sliceTensorLayoutNV(la, k0, BK, tileM, BM), transposed);
                if (B_ALONG_K != 0) coopMatLoadTensorNV(fb, b, bBase, sliceTensorLayoutNV(lb, tileN, BN, k0, BK), transposed);
                else coopMatLoadTensorNV(fb, b, bBase, sliceTensorLayoutNV(lb, k0, BK, tileN, BN));
            } else {
                if (A_ALONG_K != 0) coopMatLoadTensorNV(fa, a, aBase, sliceTensorLayoutNV(laClamped, tileM, BM, k0, BK));
                else coopMatLoadTensorNV(fa, a, aBase, sliceTensorLayoutNV(laClamped, k0, BK, tileM, BM), transposed);
                if (B_ALONG_K != 0) coopMatLoadTensorNV(fb, b, bBase, sliceTensorLayoutNV(lbClamped, tileN, BN, k0, BK), transposed);
                else coopMatLoadTensorNV(fb, b, bBase, sliceTensorLayoutNV(lbClamped, k0, BK, tileN, BN));
            }
            acc = coopMatMulAdd(fa, fb, acc);
        }

        if (pc.alpha != 1.0) {
            acc = acc * pc.alpha;
            if (pc.accumulate != 0) {
                ACC prior;
                coopMatLoadTensorNV(prior, c, cBase, sliceTensorLayoutNV(lc, tileM, BM, tileN, BN));
                acc = acc + prior;
            }
        }
        coopMatStoreTensorNV(acc, c, cBase, sliceTensorLayoutNV(lc, tileM, BM, tileN, BN));
    }
}
