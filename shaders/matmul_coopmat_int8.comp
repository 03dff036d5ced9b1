#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

// The matrix-units product through VK_NV_cooperative_matrix; the kernel is include/matmul_coopmat.glsl.
// With B an int8 weight read as A·Bᵀ: its bytes are exact in fp16 and the product of each
// output column is scaled by its row's scale as it is stored. A module apart: it binds the scales.
#define COOPMAT_INT8
#include "matmul_coopmat.glsl"
