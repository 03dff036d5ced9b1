#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// Softmax backward in place over the gradient: dS = P ⊙ (dP - Σ_j P⊙dP), row by row.
// Masked keys have P = 0 and so get no gradient, whatever dP holds there (if finite).
layout(std430, binding = 0) readonly buffer P { float p[]; };
layout(std430, binding = 1) buffer G { float g[]; };
layout(push_constant) uniform Push { uint rows; uint cols; } pc;

void main() {
    ROW_LOOP(row, pc.rows) {
        uint base = row * pc.cols;
        float dot = 0.0;
        ROW_STRIDE_LOOP(j, pc.cols) dot += p[base + j] * g[base + j];
        dot = workgroupSum(dot);
        ROW_STRIDE_LOOP(j, pc.cols) g[base + j] = p[base + j] * (g[base + j] - dot);
    }
}
