#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define SUBGROUP_ROWS_ID 2
#include "reduce.glsl"
#include "philox.glsl"
#include "attention_options.glsl"

// T5 attention probabilities, in place over scores [B, H, Lq, Lk]:
//   p[b,h,i,j] = softmax_j(s[b,h,i,j] + biasWeight[bucket[j - i + Lq - 1] * H + h])
// with -inf for keys whose keyMask[b*Lk + j] is 0 and, when causal, for keys j > i + queryOffset
// (a KV-cached decoder step's single query sits at position queryOffset). A row with every key
// masked becomes zeros: its max is -inf and exp(-inf - -inf) would be NaN.
// With DROPOUT the last pass also writes what dropout.comp would make of the probabilities, the
// same draw for the same flat index e into [B, H, Lq, Lk]: dropped[e] = keep(e) ? p[e] * scale : 0.
// A training forward then never reads the probabilities back just to drop them.
// Between passes each invocation keeps its CACHE elements of the row in registers where the
// row is short enough (AttentionSoftmaxKernel sets CACHE: T5 rows of a few hundred keys), so the
// scores are read once and the probabilities written once; longer rows (CACHE 0) go back and
// forth through s, as many passes as there are.
layout(constant_id = 1) const uint CACHE = 0;
layout(std430, binding = 0) buffer Scores { float s[]; };
layout(std430, binding = 1) readonly buffer Buckets { int bucket[]; };
layout(std430, binding = 2) readonly buffer BiasWeight { float biasWeight[]; };
layout(std430, binding = 3) readonly buffer KeyMask { int keyMask[]; };
layout(std430, binding = 4) readonly buffer Seed { uint seed; };
layout(std430, binding = 5) writeonly buffer Dropped { float dropped[]; };

// flags: the bits of include/attention_options.glsl.
layout(push_constant) uniform Push {
    uint batch; uint heads; uint queryLength; uint keyLength; uint flags; int queryOffset;
    uint threshold; float scale; uint stream;
} pc;

float cached[CACHE > 0 ? CACHE : 1];

// Element t of this invocation's share of the row, at index `at` of s.
float get(uint t, uint at) {
    if (CACHE > 0) return cached[t];
    return s[at];
}
void put(uint t, uint at, float v) {
    if (CACHE > 0) cached[t] = v;
    else s[at] = v;
}

void main() {
    uint lk = pc.keyLength;
    ROW_LOOP(row, pc.batch * pc.heads * pc.queryLength) {
        uint i = row % pc.queryLength;
        uint h = (row / pc.queryLength) % pc.heads;
        uint b = row / (pc.queryLength * pc.heads);
        uint base = row * lk;
        // Last visible key; signed so a negative offset can hide every key.
        int lastKey = (pc.flags & CAUSAL) != 0u ? int(i) + pc.queryOffset : int(lk);

        // Pass 1 keeps the biased, masked scores so later passes read one value each.
        float m = NEG_INF;
        SHARE_LOOP(t, j, lk) {
            float z = s[base + j];
            if ((pc.flags & HAS_BIAS) != 0u) z += biasWeight[uint(bucket[bucketIndex(i, j, pc.queryLength)]) * pc.heads + h];
            bool masked = int(j) > lastKey || ((pc.flags & HAS_MASK) != 0u && keyMask[b * lk + j] == 0);
            z = masked ? NEG_INF : z;
            put(t, base + j, z);
            m = max(m, z);
        }
        m = rowMax(m);

        if (m == NEG_INF) {
            ROW_STRIDE_LOOP(j, lk) {
                s[base + j] = 0.0;
                if ((pc.flags & DROPOUT) != 0u) dropped[base + j] = 0.0;
            }
            continue;
        }
        float sum = 0.0;
        SHARE_LOOP(t, j, lk) {
            float e = exp(get(t, base + j) - m);
            put(t, base + j, e);
            sum += e;
        }
        float inv = 1.0 / rowSum(sum);
        SHARE_LOOP(t, j, lk) {
            float p = get(t, base + j) * inv;
            s[base + j] = p;
            if ((pc.flags & DROPOUT) != 0u)
                dropped[base + j] = philox2x32_10(uvec2(base + j, pc.stream), seed).x >= pc.threshold ? p * pc.scale : 0.0;
        }
    }
}
