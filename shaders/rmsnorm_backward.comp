#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// Input gradient of T5LayerNorm (w is frozen). With r = rsqrt(mean(x²) + eps):
//   dx_k = r * w_k * dy_k - (r³ / dim) * x_k * Σ_j w_j dy_j x_j
// Both sums come from one reduction.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) buffer DX { float dx[]; };
// accumulate != 0 adds to dx (the residual stream's gradient already flowing) instead of
// overwriting it; overwriting never reads dx, so it may hold anything, NaN included.
layout(push_constant) uniform Push { uint rows; uint dim; float eps; uint accumulate; } pc;

void main() {
    ROW_LOOP(row, pc.rows) {
        uint base = row * pc.dim;
        vec2 sums = vec2(0.0);
        ROW_STRIDE_LOOP(j, pc.dim) {
            float xj = x[base + j];
            sums += vec2(xj * xj, w[j] * dy[base + j] * xj);
        }
        sums = workgroupSum(sums);
        float r = inversesqrt(sums.x / float(pc.dim) + pc.eps);
        float c = r * r * r / float(pc.dim) * sums.y;
        ROW_STRIDE_LOOP(j, pc.dim) {
            float g = r * w[j] * dy[base + j] - c * x[base + j];
            dx[base + j] = pc.accumulate != 0u ? dx[base + j] + g : g;
        }
    }
}
