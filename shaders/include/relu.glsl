// T5 v1.0 feed-forward activation: y = max(x, 0). The body of relu.comp and relu_half.comp
// (include/stored_buffer.glsl): x and y may be 16-bit, each told by its STORAGE constant.
// With dropout (threshold > 0) y is what dropout.comp would make of it, the same draw for flat
// index i: y[i] = keep(i) ? max(x, 0) * scale : 0, with no separate pass over the hidden tensor.
#include "stored_buffer.glsl"
#include "common.glsl"
#include "dropout.glsl"
#include "activations.glsl"

layout(constant_id = 1) const uint X_STORAGE = STORAGE_FP32;
layout(constant_id = 2) const uint Y_STORAGE = STORAGE_FP32;
STORED_BUFFER(0, readonly, X, x)
STORED_BUFFER(1, writeonly, Y, y)
layout(std430, binding = 2) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float v = relu(loadStored(x, i, X_STORAGE));
        if (pc.threshold != 0u) v = dropoutApply(v, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        storeStored(y, i, v, Y_STORAGE)
    }
}
