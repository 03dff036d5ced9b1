#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define SUBGROUP_ROWS_ID 2
#include "reduce.glsl"
#include "philox.glsl"

// Softmax backward in place over the gradient: dS = P ⊙ (dP - Σ_j P⊙dP), row by row.
// Masked keys have P = 0 and so get no gradient, whatever dP holds there (if finite).
// With dropout on the probabilities (threshold > 0), g arrives as the gradient of the dropped
// probabilities, and dP = keep(e) ? g[e] * scale : 0 is taken as g is read, with dropout.comp's
// draw for flat index e. The same pass rebuilds the dropped probabilities the value gradient
// needs, dropped[e] = keep(e) ? p[e] * scale : 0, from the p it reads anyway: the backward then
// makes no separate passes to drop the gradient or to redraw the forward's dropped copy.
// Where the row is short enough (CACHE > 0, set by SoftmaxBackwardKernel) each invocation keeps
// its p, dP and keep draws in registers from the first pass to the second, which then reads
// neither buffer again nor draws again.
layout(constant_id = 1) const uint CACHE = 0;
layout(std430, binding = 0) readonly buffer P { float p[]; };
layout(std430, binding = 1) buffer G { float g[]; };
layout(std430, binding = 2) readonly buffer Seed { uint seed; };
layout(std430, binding = 3) writeonly buffer Dropped { float dropped[]; };
// Without dropout threshold is 0 and scale 1: every element is kept and g * 1 is g exactly.
layout(push_constant) uniform Push { uint rows; uint cols; uint threshold; float scale; uint stream; } pc;

bool keeps(uint e) {
    return pc.threshold == 0u || philox2x32_10(uvec2(e, pc.stream), seed).x >= pc.threshold;
}

// precise: g * scale is rounded on its own, as dropout.comp stores it, and never fused with the
// subtraction that follows into one fma, which would differ from a separate dropout pass.
float probsGrad(uint e, bool keep) {
    precise float dp = keep ? g[e] * pc.scale : 0.0;
    return dp;
}

const uint SLOTS = CACHE > 0 ? CACHE : 1;

void main() {
    ROW_LOOP(row, pc.rows) {
        uint base = row * pc.cols;
        float cachedP[SLOTS], cachedDp[SLOTS];
        uint kept = 0u;
        float dot = 0.0;
        SHARE_LOOP(t, j, pc.cols) {
            uint e = base + j;
            bool keep = keeps(e);
            float pe = p[e], dp = probsGrad(e, keep);
            if (CACHE > 0) {
                cachedP[t] = pe;
                cachedDp[t] = dp;
                kept |= keep ? 1u << t : 0u;
            }
            dot += pe * dp;
        }
        dot = rowSum(dot);
        SHARE_LOOP(t, j, pc.cols) {
            uint e = base + j;
            bool keep;
            float pe, dp;
            if (CACHE > 0) {
                keep = (kept >> t & 1u) != 0u;
                pe = cachedP[t];
                dp = cachedDp[t];
            } else {
                keep = keeps(e);
                pe = p[e];
                dp = probsGrad(e, keep);
            }
            g[e] = pe * (dp - dot);
            if (pc.threshold != 0u) dropped[e] = keep ? pe * pc.scale : 0.0;
        }
    }
}
