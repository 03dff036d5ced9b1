#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// Token log-likelihoods: logprob[r] = logits[r, t] - logsumexp(logits[r, :]) with t = targets[r];
// 0 where t < 0 (padding). A target >= vocab gives NaN, so a tokenizer/vocabulary mismatch shows in
// the loss instead of silently reading a neighbouring row.
layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) readonly buffer Targets { int targets[]; };
layout(std430, binding = 2) writeonly buffer LogProbs { float logprob[]; };
layout(push_constant) uniform Push { uint rows; uint vocab; } pc;

void main() {
    ROW_LOOP(row, pc.rows) {
        int t = targets[row];
        if (t < 0) {
            if (gl_LocalInvocationID.x == 0u) logprob[row] = 0.0;
            continue;
        }
        uint base = row * pc.vocab;
        float m = NEG_INF;
        ROW_STRIDE_LOOP(j, pc.vocab) m = max(m, logits[base + j]);
        m = workgroupMax(m);
        float sum = 0.0;
        ROW_STRIDE_LOOP(j, pc.vocab) sum += exp(logits[base + j] - m);
        sum = workgroupSum(sum);
        if (gl_LocalInvocationID.x == 0u)
            logprob[row] = uint(t) < pc.vocab ? (logits[base + uint(t)] - m) - log(sum) : uintBitsToFloat(0x7fc00000u);
    }
}
