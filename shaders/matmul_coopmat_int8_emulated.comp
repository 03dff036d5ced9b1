#version 450
#extension GL_GOOGLE_include_directive : require

// The matrix-units product with its matrix operations emulated (include/coopmat.glsl):
// the same kernel, include/matmul_coopmat.glsl, for devices without matrix units.
#define COOPMAT_EMULATED
// With B an int8 weight read as A·Bᵀ: its bytes are exact in fp16 and the product of each
// output column is scaled by its row's scale as it is stored. A module apart: it binds the scales.
#define COOPMAT_INT8
#include "matmul_coopmat.glsl"
