// B, the frozen weight, stored as int8 with one fp32 scale per row of the [rows, cols] table
// (include/int8.glsl), read through loadB / loadB4 as include/matmul.glsl expects; for
// matmul_int8.comp and matmul_int8_half.comp, which define MATMUL_INT8_B. The table is read as
// [n][k] (A·Bᵀ, bStrideK = 1) or as [k][n] (A·B, bStrideN = 1), the other stride being its row
// length (MatMulKernel checks), so element i lies in row i / rowLength whatever the batch and
// offset (both strides 1: a table one column wide).
#ifndef VKPROMPT_MATMUL_INT8_B_GLSL
#define VKPROMPT_MATMUL_INT8_B_GLSL
#include "matmul_push.glsl"
#include "int8.glsl"

layout(std430, binding = 1) readonly buffer BufB { uint b[]; };
layout(std430, binding = 3) readonly buffer BufBScale { float bScale[]; };

uint rowLength() { return pc.bStrideK == 1u ? pc.bStrideN : pc.bStrideK; }

float loadB(uint i) { return widenInt8(b[i >> 2], i & 3u, bScale[i / rowLength()]); }

// A vec4 fetch is aligned to four elements (MatMulKernel.VectorLoads), so where rows are whole
// words its four bytes lie in one row. Otherwise (a one-column table, or a single row of K = 1
// read across) each byte takes its own row's scale; the index is clamped because a word's last
// bytes may be padding past the last row. The branch is uniform: rowLength is a push constant.
vec4 loadB4(uint i) {
    const uint len = rowLength();
    const uint e = i * 4u;
    if (len % 4u == 0u) return widenInt8(b[i], bScale[e / len]);
    const uint last = uint(bScale.length()) - 1u;
    vec4 v;
    for (uint q = 0u; q < 4u; q++) v[q] = widenInt8(b[i], q, bScale[min((e + q) / len, last)]);
    return v;
}

#endif
