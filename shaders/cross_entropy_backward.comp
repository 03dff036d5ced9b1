#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// Gradient of the mean token loss, -Σ_r logprob[r] / count, with respect to the logits:
//   dlogits[r, :] = scale * (softmax(logits[r, :]) - onehot(t)), 0 for padding rows (t < 0),
// scale = 1 / count of non-padding targets, counted here by every workgroup (a few thousand ints)
// so the host never has to supply a per-batch constant to a recorded graph.
// NaN for t >= vocab (as the forward). dlogits may be the logits buffer itself: every element is
// read and then written by the same invocation, which saves a [rows, vocab] buffer.
layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) readonly buffer Targets { int targets[]; };
layout(std430, binding = 2) writeonly buffer DLogits { float dlogits[]; };
layout(push_constant) uniform Push { uint rows; uint vocab; } pc;

void main() {
    float count = 0.0;
    ROW_STRIDE_LOOP(r, pc.rows) count += targets[r] >= 0 ? 1.0 : 0.0;
    count = workgroupSum(count);
    float scale = count > 0.0 ? 1.0 / count : 0.0;
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
            dlogits[base + j] = valid ? scale * (j == uint(t) ? p - 1.0 : p) : uintBitsToFloat(0x7fc00000u);
        }
    }
}
