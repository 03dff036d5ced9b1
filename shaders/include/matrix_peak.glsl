#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

// The rate the matrix units reach through this driver, for `vkprompt bench peak`: each subgroup
// runs TILES_M x TILES_N 16x16x16 products (fp16 operands, fp32 sums) per iteration, the
// operands' fragments loaded from shared memory once (RELOAD 0: the matrix units alone) or
// again every iteration (RELOAD 1: with the TILES_M + TILES_N fragment loads that
// include/matmul_coopmat.glsl issues per 16 k). Reloads alternate between two copies of the
// operands so that no compiler can hoist them out of the loop. Every element of every
// accumulator ends as iterations · 16 · a · b, which the command checks.
#ifdef COOPMAT_EMULATED
const uint SUBGROUP = 32;
#else
layout(constant_id = 1) const uint SUBGROUP = 32;
#endif
layout(constant_id = 2) const uint WARPS = 4;
layout(constant_id = 3) const uint TILES_M = 2;
layout(constant_id = 4) const uint TILES_N = 4;
layout(constant_id = 5) const uint RELOAD = 0;

const uint WG = gl_WorkGroupSize.x;
// Each operand 16 rows of 16 + 8 halves (the product's padding), in uvec2s of four halves.
const uint ROW = 6;
const uint A_COPY = TILES_M * 16 * ROW;
const uint B_COPY = TILES_N * 16 * ROW;
shared uvec2 sa[2 * A_COPY];
shared uvec2 sb[2 * B_COPY];

layout(std430, binding = 0) buffer BufC { float c[]; };
layout(push_constant) uniform Push {
    uint iterations;
    float a, b;
} pc;
#include "coopmat.glsl"

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint warp = cmSubgroup();
    const uvec2 a4 = uvec2(packFloat2x16(f16vec2(float16_t(pc.a))));
    const uvec2 b4 = uvec2(packFloat2x16(f16vec2(float16_t(pc.b))));
    for (uint i = tid; i < 2 * A_COPY; i += WG) sa[i] = a4;
    for (uint i = tid; i < 2 * B_COPY; i += WG) sb[i] = b4;
    barrier();

    CM_ACC acc[TILES_M * TILES_N];
    CM_FRAG_A fa[TILES_M];
    CM_FRAG_B fb[TILES_N];
    [[unroll]] for (uint t = 0; t < TILES_M * TILES_N; t++) acc[t] = cmZero();
    [[unroll]] for (uint i = 0; i < TILES_M; i++) cmLoadA(fa[i], i * 16 * ROW, ROW, false);
    [[unroll]] for (uint j = 0; j < TILES_N; j++) cmLoadB(fb[j], j * 16 * ROW, ROW, true);
    for (uint it = 0; it < pc.iterations; it++) {
        if (RELOAD != 0) {
            const uint copy = it & 1;
            [[unroll]] for (uint i = 0; i < TILES_M; i++) cmLoadA(fa[i], copy * A_COPY + i * 16 * ROW, ROW, false);
            [[unroll]] for (uint j = 0; j < TILES_N; j++) cmLoadB(fb[j], copy * B_COPY + j * 16 * ROW, ROW, true);
        }
        [[unroll]] for (uint i = 0; i < TILES_M; i++)
            [[unroll]] for (uint j = 0; j < TILES_N; j++)
                acc[i * TILES_N + j] = cmMulAdd(fa[i], fb[j], acc[i * TILES_N + j]);
    }
    const uint first = (gl_WorkGroupID.x * WARPS + warp) * TILES_M * TILES_N;
    [[unroll]] for (uint t = 0; t < TILES_M * TILES_N; t++) cmStoreC(acc[t], (first + t) * 256, 16);
}
