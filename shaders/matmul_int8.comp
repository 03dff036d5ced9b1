#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "matmul_push.glsl"
#include "int8.glsl"

// C = alpha·A·B (+ C) with B, the frozen weight, stored as int8 with one fp32 scale per row of
// the [rows, cols] table (include/int8.glsl) and A and C fp32; include/matmul.glsl holds the
// algorithm. The table is read as [n][k] (A·Bᵀ, bStrideK = 1) or as [k][n] (A·B, bStrideN = 1),
// the other stride being its row length (MatMulKernel checks), so element i lies in row
// i / rowLength whatever the batch and offset. A vec4 fetch is aligned to four elements along
// the contiguous index (MatMulKernel.VectorLoads), so its four bytes are one word of one row.
layout(std430, binding = 1) readonly buffer BufB { uint b[]; };
layout(std430, binding = 3) readonly buffer BufBScale { float bScale[]; };

uint rowLength() { return pc.bStrideK == 1u ? pc.bStrideN : pc.bStrideK; }

float loadB(uint i) { return widenInt8(b[i >> 2], i & 3u, bScale[i / rowLength()]); }
vec4 loadB4(uint i) { return widenInt8(b[i], bScale[i * 4u / rowLength()]); }

#include "matmul.glsl"
