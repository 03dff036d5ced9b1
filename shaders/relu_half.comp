#version 450
#extension GL_GOOGLE_include_directive : require
// The build of relu.comp whose bindings may be 16-bit (include/stored_buffer.glsl).
#define STORED_16BIT
#include "relu.glsl"
