#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dropout.glsl"

// T5 v1.0 feed-forward activation: y = max(x, 0).
// With dropout (threshold > 0) y is what dropout.comp would make of it, the same draw for flat
// index i: y[i] = keep(i) ? max(x, 0) * scale : 0, with no separate pass over the hidden tensor.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(std430, binding = 2) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    // A comparison instead of max(): max() with a NaN operand is undefined in GLSL, while this
    // passes NaN through (as PyTorch's relu does) so a diverged run stays visible.
    GRID_STRIDE_LOOP(i, pc.n) {
        float v = x[i];
        v = v < 0.0 ? 0.0 : v;
        if (pc.threshold != 0u) v = dropoutApply(v, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        y[i] = v;
    }
}
