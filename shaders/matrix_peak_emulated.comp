#version 450
#extension GL_GOOGLE_include_directive : require

// include/matrix_peak.glsl with its matrix operations emulated (include/coopmat.glsl): checks the
// kernel's sums where there are no matrix units; its rate means nothing.
#define COOPMAT_EMULATED
#include "matrix_peak.glsl"
