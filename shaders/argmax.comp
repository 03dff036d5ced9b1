#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// Greedy decoding: ids[r] = argmax_j logits[r, j], the lowest index among equal maxima (as
// torch.argmax on CPU). NaN counts as larger than every number, as in torch, and -0 equals +0.
// The logits are read as bits and compared as integers: Vulkan lets drivers ignore NaN and the
// sign of zero in float arithmetic, integer comparisons keep those rules exact.
layout(std430, binding = 0) readonly buffer Logits { uint logitBits[]; };
layout(std430, binding = 1) writeonly buffer Ids { int ids[]; };
layout(push_constant) uniform Push { uint rows; uint vocab; } pc;

// Unsigned keys in the order of the floats; every key of a real value is > 0.
uint orderKey(uint bits) {
    if ((bits & 0x7fffffffu) > 0x7f800000u) return 0xffffffffu;
    if (bits == 0x80000000u) bits = 0u;
    return (bits & 0x80000000u) != 0u ? ~bits : bits | 0x80000000u;
}

void main() {
    ROW_LOOP(row, pc.rows) {
        uint base = row * pc.vocab;
        // Each invocation scans its indices in increasing order, so keeping the first of equal
        // keys keeps its lowest index.
        uint bestKey = 0u, bestIndex = 0xffffffffu;
        ROW_STRIDE_LOOP(j, pc.vocab) {
            uint k = orderKey(logitBits[base + j]);
            if (k > bestKey) { bestKey = k; bestIndex = j; }
        }
        uint maxKey = workgroupMax(bestKey);
        uint index = workgroupMin(bestKey == maxKey ? bestIndex : 0xffffffffu);
        if (gl_LocalInvocationID.x == 0u) ids[row] = int(index);
    }
}
