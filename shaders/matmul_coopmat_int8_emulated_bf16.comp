#version 450
#extension GL_GOOGLE_include_directive : require

// matmul_coopmat_int8_emulated.comp with bf16 fragments (matmul_coopmat_emulated_bf16.comp).
#define COOPMAT_EMULATED
#define COOPMAT_BF16
#define COOPMAT_INT8
#include "matmul_coopmat.glsl"
