#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"

// Gradient of y = gelu_tanh(a) * b: da = dy * b * gelu_tanh'(a), db = dy * gelu_tanh(a).
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) writeonly buffer DA { float da[]; };
layout(std430, binding = 4) writeonly buffer DB { float db[]; };
layout(push_constant) uniform Push { uint n; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float ai = a[i], g = dy[i];
        da[i] = g * b[i] * gelu_tanh_grad(ai);
        db[i] = g * gelu_tanh(ai);
    }
}
