#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// Gradient of loss = -scale * Σ_r logprob[r] with respect to the logits:
//   dlogits[r, :] = scale * (softmax(logits[r, :]) - onehot(t)), 0 for padding rows (t < 0),
// NaN for t >= vocab (as the forward). dlogits may be the logits buffer itself: every element is
// read and then written by the same invocation, which saves a [rows, vocab] buffer.
layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) readonly buffer Targets { int targets[]; };
layout(std430, binding = 2) writeonly buffer DLogits { float dlogits[]; };
layout(push_constant) uniform Push { uint rows; uint vocab; float scale; } pc;

void main() {
    ROW_LOOP(row, pc.rows) {
        int t = targets[row];
        uint base = row * pc.vocab;
        if (t < 0) {
            ROW_STRIDE_LOOP(j, pc.vocab) dlogits[base + j] = 0.0;
            continue;
        }
        float m = NEG_INF;
        ROW_STRIDE_LOOP(j, pc.vocab) m = max(m, logits[base + j]);
        m = workgroupMax(m);
        float sum = 0.0;
        ROW_STRIDE_LOOP(j, pc.vocab) sum += exp(logits[base + j] - m);
        float inv = 1.0 / workgroupSum(sum);
        bool valid = uint(t) < pc.vocab;
        ROW_STRIDE_LOOP(j, pc.vocab) {
            float p = exp(logits[base + j] - m) * inv;
            dlogits[base + j] = valid ? pc.scale * (j == uint(t) ? p - 1.0 : p) : uintBitsToFloat(0x7fc00000u);
        }
    }
}
