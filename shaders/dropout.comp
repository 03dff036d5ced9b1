#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dropout.glsl"

// Inverted dropout: y[i] = keep(i) ? x[i] * scale : 0, scale = 1 / (1 - rate). y may be x (in
// place): each invocation reads its element before writing it. Out of place, it spares a copy
// where the undropped values are still needed (attention probabilities, for the backward).
// keep(i) draws Philox with counter (i, stream) and key seed, and keeps the element when the
// 32-bit draw is at least threshold = round(rate * 2^32); the host computes threshold and scale
// once so the GPU and the C# reference compare the same integers and multiply by the same float.
// The op is linear with a fixed mask, so the backward pass is this same shader on the gradient.
// The seed is read from a buffer, not a push constant, so a recorded training step replays with
// a new seed each step (the host writes one uint) and fresh masks.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Seed { uint seed; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        y[i] = dropoutApply(x[i], dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
    }
}
