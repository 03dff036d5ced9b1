#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

// The fused attention's forward on the matrix units through GL_KHR_cooperative_matrix; the kernel
// is include/fused_attention_coopmat_forward.glsl.
#define COOPMAT_KHR
#include "fused_attention_coopmat_forward.glsl"
