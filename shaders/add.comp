#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Residual connection: x += alpha * y.
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint n; float alpha; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) x[i] += pc.alpha * y[i];
}
