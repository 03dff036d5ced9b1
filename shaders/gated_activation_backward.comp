#version 450
#extension GL_GOOGLE_include_directive : require
// fp32 only; gated_activation_backward_half.comp is the build whose bindings may be 16-bit (include/stored_buffer.glsl).
#include "gated_activation_backward.glsl"
