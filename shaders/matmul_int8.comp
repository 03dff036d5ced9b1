#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// C = alpha·A·B (+ C) with B, the frozen weight, stored as int8 rows with a scale each
// (include/matmul_int8_b.glsl) and A and C fp32; include/matmul.glsl holds the algorithm. The
// module declares neither an 8-bit nor a 16-bit type, so it runs on every device;
// matmul_int8_half.comp takes 16-bit A or C.
#define MATMUL_INT8_B
#include "matmul_int8_b.glsl"
#include "matmul_operands.glsl"
#include "matmul.glsl"
