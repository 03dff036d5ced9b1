#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// T5 v1.0 feed-forward activation: y = max(x, 0).
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint n; } pc;

void main() {
    // A comparison instead of max(): max() with a NaN operand is undefined in GLSL, while this
    // passes NaN through (as PyTorch's relu does) so a diverged run stays visible.
    GRID_STRIDE_LOOP(i, pc.n) {
        float v = x[i];
        y[i] = v < 0.0 ? 0.0 : v;
    }
}
