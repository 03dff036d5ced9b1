#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

// The cooperative-matrix product on the matrix units through GL_KHR_cooperative_matrix, which
// every vendor's driver exposes (VK_KHR_cooperative_matrix); the kernel is include/matmul_coopmat.glsl.
#define COOPMAT_KHR
// With B an int8 weight read as A·Bᵀ: its bytes are exact in fp16 and the product of each
// output column is scaled by its row's scale as it is stored. A module apart: it binds the scales.
#define COOPMAT_INT8
#include "matmul_coopmat.glsl"
