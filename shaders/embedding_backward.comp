#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Prompt gradient: dPrompts[k, p] = sum over examples b with promptIndex[b] = k of dX[b, p]
// (the token rows get no gradient: the table is frozen). One invocation per output element
// loops over the batch instead of scattering with atomics: float atomics are an optional
// feature, and a fixed summation order makes the gradient deterministic. Every element is
// overwritten, so prompts no example uses get exact zeros.
layout(std430, binding = 0) readonly buffer DX { float dX[]; };         // [batch, P + len, dim]
layout(std430, binding = 1) readonly buffer PromptIndex { int promptIndex[]; }; // [batch]
layout(std430, binding = 2) writeonly buffer DP { float dPrompts[]; };  // [numPrompts, P, dim]
layout(push_constant) uniform Push { uint batch; uint len; uint promptLen; uint dim; uint numPrompts; } pc;

void main() {
    uint promptSize = pc.promptLen * pc.dim;
    uint exampleSize = (pc.promptLen + pc.len) * pc.dim;
    GRID_STRIDE_LOOP(i, pc.numPrompts * promptSize) {
        uint k = i / promptSize;
        uint within = i % promptSize;
        float sum = 0.0;
        for (uint b = 0u; b < pc.batch; b++)
            if (uint(promptIndex[b]) == k) sum += dX[b * exampleSize + within];
        dPrompts[i] = sum;
    }
}
