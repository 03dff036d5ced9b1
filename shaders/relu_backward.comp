#version 450
#extension GL_GOOGLE_include_directive : require
// fp32 only; relu_backward_half.comp is the build whose bindings may be 16-bit (include/stored_buffer.glsl).
#include "relu_backward.glsl"
