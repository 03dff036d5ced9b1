#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

// The cooperative-matrix product on the matrix units through GL_KHR_cooperative_matrix, which
// every vendor's driver exposes (VK_KHR_cooperative_matrix); the kernel is include/matmul_coopmat.glsl.
#define COOPMAT_KHR
#include "matmul_coopmat.glsl"
