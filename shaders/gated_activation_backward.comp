#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"
#include "dropout.glsl"

// Gradient of y = act(a) * b: da = dy * b * act'(a), db = dy * act(a).
// With dropout on y (threshold > 0), dy arrives as the gradient of the dropped y and goes
// through dropout.comp's mask as it is read, dy = keep(i) ? dy[i] * scale : 0: the backward
// then makes no separate pass over the hidden gradient to drop it.
layout(constant_id = 1) const uint ACTIVATION = 0u;  // ACTIVATION_GELU_TANH
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) writeonly buffer DA { float da[]; };
layout(std430, binding = 4) writeonly buffer DB { float db[]; };
layout(std430, binding = 5) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float ai = a[i], g = dy[i];
        if (pc.threshold != 0u) g = dropoutApply(g, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        da[i] = g * b[i] * gate_activation_grad(ACTIVATION, ai);
        db[i] = g * gate_activation(ACTIVATION, ai);
    }
}
