#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

// The matrix-units product through VK_NV_cooperative_matrix; the kernel is include/matmul_coopmat.glsl.
#include "matmul_coopmat.glsl"
