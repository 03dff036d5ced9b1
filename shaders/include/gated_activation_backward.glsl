// Gradient of y = act(a) * b: da = dy * b * act'(a), db = dy * act(a). The body of
// gated_activation_backward.comp and gated_activation_backward_half.comp
// (include/stored_buffer.glsl): a and b, kept from the forward, may be 16-bit; the gradients
// dy, da and db are fp32.
// With dropout on y (threshold > 0), dy arrives as the gradient of the dropped y and goes
// through dropout.comp's mask as it is read, dy = keep(i) ? dy[i] * scale : 0: the backward
// then makes no separate pass over the hidden gradient to drop it.
#include "stored_buffer.glsl"
#include "common.glsl"
#include "activations.glsl"
#include "dropout.glsl"

layout(constant_id = 1) const uint ACTIVATION = 0u;  // ACTIVATION_GELU_TANH
layout(constant_id = 2) const uint A_STORAGE = STORAGE_FP32;
layout(constant_id = 3) const uint B_STORAGE = STORAGE_FP32;
STORED_BUFFER(0, readonly, A, a)
STORED_BUFFER(1, readonly, B, b)
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) writeonly buffer DA { float da[]; };
layout(std430, binding = 4) writeonly buffer DB { float db[]; };
layout(std430, binding = 5) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float ai = loadStored(a, i, A_STORAGE), g = dy[i];
        if (pc.threshold != 0u) g = dropoutApply(g, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        da[i] = g * loadStored(b, i, B_STORAGE) * gate_activation_grad(ACTIVATION, ai);
        db[i] = g * gate_activation(ACTIVATION, ai);
    }
}
