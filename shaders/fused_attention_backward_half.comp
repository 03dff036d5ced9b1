#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require

// The fused attention's backward with q, k, v and o each stored as fp32, fp16 or bf16
// (include/fused_attention.glsl), for devices with 16-bit storage; the kernel is
// include/fused_attention_backward.glsl.
#define STORED_16BIT
#include "fused_attention_backward.glsl"
