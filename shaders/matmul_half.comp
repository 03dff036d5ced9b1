#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
#include "common.glsl"

// C = alpha·A·B (+ C) with B, the frozen weight, stored as fp16 or bf16 (include/half.glsl) and
// A and C fp32; include/matmul.glsl holds the algorithm. A file apart from matmul.comp because
// a module declaring a 16-bit buffer requires 16-bit storage of the device, which the fp32
// product must not.
layout(constant_id = 7) const uint WEIGHT_BF16 = 0;
#include "half.glsl"

layout(std430, binding = 1) readonly buffer BufB { uint16_t b[]; };
// The same B viewed as groups of four, for the vectorized fetches.
layout(std430, binding = 1) readonly buffer BufB4 { u16vec4 b4[]; };

float loadB(uint i) { return widen(uint(b[i])); }
vec4 loadB4(uint i) { return widen(uvec4(b4[i])); }

#include "matmul.glsl"
