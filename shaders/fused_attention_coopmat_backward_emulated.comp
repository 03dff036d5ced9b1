#version 450
#extension GL_GOOGLE_include_directive : require

// The fused attention's backward on the matrix units, their operations emulated
// (include/coopmat.glsl): the same kernel, include/fused_attention_coopmat_backward.glsl, for
// devices without matrix units.
#define COOPMAT_EMULATED
#include "fused_attention_coopmat_backward.glsl"
