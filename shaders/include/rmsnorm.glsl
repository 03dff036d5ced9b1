// T5LayerNorm: y = w * (x * rsqrt(mean(x²) + eps)), in HF's order of operations. The body of
// rmsnorm.comp and rmsnorm_half.comp (include/stored_buffer.glsl): y, the normed input of the
// q/k/v and wi products, may be 16-bit; x, the residual stream, w and the statistics stay fp32.
#include "stored_buffer.glsl"
#include "common.glsl"
#include "reduce.glsl"

layout(constant_id = 1) const uint Y_STORAGE = STORAGE_FP32;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
STORED_BUFFER(2, writeonly, Y, y)
layout(push_constant) uniform Push { uint rows; uint dim; float eps; } pc;

void main() {
    ROW_LOOP(row, pc.rows) {
        uint base = row * pc.dim;
        float ss = 0.0;
        ROW_STRIDE_LOOP(j, pc.dim) ss += x[base + j] * x[base + j];
        float r = inversesqrt(workgroupSum(ss) / float(pc.dim) + pc.eps);
        ROW_STRIDE_LOOP(j, pc.dim) storeStored(y, base + j, w[j] * (x[base + j] * r), Y_STORAGE)
    }
}
