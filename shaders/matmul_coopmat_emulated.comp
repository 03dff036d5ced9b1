#version 450
#extension GL_GOOGLE_include_directive : require

// The matrix-units product with its matrix operations emulated (include/coopmat.glsl):
// the same kernel, include/matmul_coopmat.glsl, for devices without matrix units.
#define COOPMAT_EMULATED
#include "matmul_coopmat.glsl"
