#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_bfloat16 : require

// matmul_coopmat_int8_khr.comp with bf16 fragments (matmul_coopmat_khr_bf16.comp): the int8
// weight's bytes are exact in bf16 as in fp16. The kernel is include/matmul_coopmat.glsl.
#define COOPMAT_KHR
#define COOPMAT_BF16
#define COOPMAT_INT8
#include "matmul_coopmat.glsl"
