#version 450
#extension GL_GOOGLE_include_directive : require

// matmul_coopmat_emulated.comp with bf16 fragments: the operands rounded as
// matmul_coopmat_khr_bf16.comp rounds them, multiplied by ordinary arithmetic, so devices without
// bf16 matrix units (lavapipe in CI) test that kernel's staging and numerics.
#define COOPMAT_EMULATED
#define COOPMAT_BF16
#include "matmul_coopmat.glsl"
