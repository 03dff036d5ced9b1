#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// C = alpha·A·B (+ C) with every operand fp32; include/matmul.glsl holds the algorithm.
layout(std430, binding = 1) readonly buffer BufB { float b[]; };
// The same B viewed as vec4s, for the vectorized fetches.
layout(std430, binding = 1) readonly buffer BufB4 { vec4 b4[]; };

float loadB(uint i) { return b[i]; }
vec4 loadB4(uint i) { return b4[i]; }

#include "matmul.glsl"
