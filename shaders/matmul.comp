#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// C = alpha·A·B (+ C) with every operand fp32; include/matmul.glsl holds the algorithm. The
// module declares no 16-bit type, so devices without 16-bit storage run it (matmul_half.comp
// takes every product with a 16-bit operand).
#include "matmul_operands.glsl"
#include "matmul.glsl"
