#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
#include "common.glsl"

// C = alpha·A·B (+ C) where any of A, B and C is stored in 16 bits: A and C as fp32, fp16 or bf16
// activations, B as a 16-bit frozen weight or as an activation of any of the three
// (A_STORAGE, B_STORAGE, C_STORAGE; include/matmul_operands.glsl); include/matmul.glsl holds
// the algorithm. A file apart from matmul.comp because a module declaring a 16-bit buffer
// requires 16-bit storage of the device, which the fp32 product must not.
#define STORED_16BIT
#include "matmul_operands.glsl"
#include "matmul.glsl"
