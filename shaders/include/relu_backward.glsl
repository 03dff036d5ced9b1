// dx = dy where x > 0, else 0 (the subgradient at 0 is taken as 0, as PyTorch does). The body of
// relu_backward.comp and relu_backward_half.comp (include/stored_buffer.glsl): x, kept from the
// forward (its input, or its output, which T5Pass keeps: positive exactly where the input is and
// the mask kept the element), may be 16-bit; dy and dx are fp32.
// With dropout on the relu's output (threshold > 0), dy arrives as the gradient of the dropped
// output and goes through dropout.comp's mask as it is read, dy = keep(i) ? dy[i] * scale : 0,
// with no separate pass over the hidden gradient.
#include "stored_buffer.glsl"
#include "common.glsl"
#include "dropout.glsl"

layout(constant_id = 1) const uint X_STORAGE = STORAGE_FP32;
STORED_BUFFER(0, readonly, X, x)
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
layout(std430, binding = 3) readonly buffer Seed { uint seed; };
layout(push_constant) uniform Push { uint n; uint threshold; float scale; uint stream; } pc;

void main() {
    GRID_STRIDE_LOOP(i, pc.n) {
        float g = dy[i];
        if (pc.threshold != 0u) g = dropoutApply(g, dropoutKeeps(i, pc.stream, seed, pc.threshold), pc.scale);
        dx[i] = loadStored(x, i, X_STORAGE) > 0.0 ? g : 0.0;
    }
}
