#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

// The matrix units' attainable rate through VK_NV_cooperative_matrix; the kernel is include/matrix_peak.glsl.
#include "matrix_peak.glsl"
