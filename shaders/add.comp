#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dropout.glsl"

// out = x + alpha * y, out either x itself (residual connections, gradient accumulation in
// place) or a tensor of its own. With dropout (threshold > 0) y is what dropout.comp would make
// of it, the same draw for flat index i: a residual branch is dropped and added in one pass, and
// the stream it joins is copied on the way, where three passes (copy, dropout, add) moved the
// same data before.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(std430, binding = 2) writeonly buffer Out { float o[]; };
layout(std430, binding = 3) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; float alpha; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float v = y[i];
        if (pc.threshold != 0u) v = dropoutApply(v, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        o[i] = x[i] + pc.alpha * v;
    }
}
