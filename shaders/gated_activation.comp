#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"
#include "dropout.glsl"

// The gated feed-forward: y = act(a) * b, a = wi_0 x and b = wi_1 x, act chosen by ACTIVATION
// (gelu_tanh in T5 v1.1, silu in UL2; activations.glsl).
// With dropout (threshold > 0) y is what dropout.comp would make of it, the same draw for flat
// index i: y[i] = keep(i) ? act(a) * b * scale : 0. A training forward then makes no
// separate read and write pass over the hidden tensor to drop it.
layout(constant_id = 1) const uint ACTIVATION = 0u;  // ACTIVATION_GELU_TANH
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float v = gate_activation(ACTIVATION, a[i]) * b[i];
        if (pc.threshold != 0u) v = dropoutApply(v, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        y[i] = v;
    }
}
