#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// dx = dy where x > 0, else 0 (the subgradient at 0 is taken as 0, as PyTorch does).
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Push { uint n; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) dx[i] = x[i] > 0.0 ? dy[i] : 0.0;
}
