#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_bfloat16 : require

// matmul_coopmat_khr.comp with bf16 fragments (VK_KHR_shader_bfloat16's 16x16x16
// bf16·bf16+fp32 shape, DevicePlan.MatrixUnitsOperands): a bf16 operand enters the units as
// stored, and no activation saturates at fp16's ±65504. The kernel is include/matmul_coopmat.glsl.
#define COOPMAT_KHR
#define COOPMAT_BF16
#include "matmul_coopmat.glsl"
