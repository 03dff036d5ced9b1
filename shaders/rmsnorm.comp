#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// T5LayerNorm: y = w * (x * rsqrt(mean(x²) + eps)), in HF's order of operations.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push { uint rows; uint dim; float eps; } pc;

void main() {
    ROW_LOOP(row, pc.rows) {
        uint base = row * pc.dim;
        float ss = 0.0;
        ROW_STRIDE_LOOP(j, pc.dim) ss += x[base + j] * x[base + j];
        float r = inversesqrt(workgroupSum(ss) / float(pc.dim) + pc.eps);
        ROW_STRIDE_LOOP(j, pc.dim) y[base + j] = w[j] * (x[base + j] * r);
    }
}
