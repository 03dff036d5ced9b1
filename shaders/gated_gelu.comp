#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"

// T5 v1.1 feed-forward gate: y = gelu_tanh(a) * b, a = wi_0 x and b = wi_1 x.
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint n; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) y[i] = gelu_tanh(a[i]) * b[i];
}
