// The gated feed-forward: y = act(a) * b, a = wi_0 x and b = wi_1 x, act chosen by ACTIVATION
// (gelu_tanh in T5 v1.1, silu in UL2; activations.glsl). The body of gated_activation.comp and
// gated_activation_half.comp (include/stored_buffer.glsl): a, b and y may be 16-bit, each told by
// its STORAGE constant; the arithmetic is fp32 either way.
// With dropout (threshold > 0) y is what dropout.comp would make of it, the same draw for flat
// index i: y[i] = keep(i) ? act(a) * b * scale : 0. A training forward then makes no
// separate read and write pass over the hidden tensor to drop it.
#include "stored_buffer.glsl"
#include "common.glsl"
#include "activations.glsl"
#include "dropout.glsl"

layout(constant_id = 1) const uint ACTIVATION = 0u;  // ACTIVATION_GELU_TANH
layout(constant_id = 2) const uint A_STORAGE = STORAGE_FP32;
layout(constant_id = 3) const uint B_STORAGE = STORAGE_FP32;
layout(constant_id = 4) const uint Y_STORAGE = STORAGE_FP32;
STORED_BUFFER(0, readonly, A, a)
STORED_BUFFER(1, readonly, B, b)
STORED_BUFFER(2, writeonly, Y, y)
layout(std430, binding = 3) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float v = gate_activation(ACTIVATION, loadStored(a, i, A_STORAGE)) * loadStored(b, i, B_STORAGE);
        if (pc.threshold != 0u) v = dropoutApply(v, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        storeStored(y, i, v, Y_STORAGE)
    }
}
