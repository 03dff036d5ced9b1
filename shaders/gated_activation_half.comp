#version 450
#extension GL_GOOGLE_include_directive : require
// The build of gated_activation.comp whose bindings may be 16-bit (include/stored_buffer.glsl).
#define STORED_16BIT
#include "gated_activation.glsl"
