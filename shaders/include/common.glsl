// Shared by every kernel. Conventions:
// - constant_id 0 is the workgroup size in x (set per device from C#).
// - 1-D kernels loop grid-stride so a dispatch never needs more than 65535 groups.
#ifndef VKPROMPT_COMMON_GLSL
#define VKPROMPT_COMMON_GLSL

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

#define GRID_STRIDE_LOOP(i, n) \
    for (uint i = gl_GlobalInvocationID.x; i < uint(n); i += gl_NumWorkGroups.x * gl_WorkGroupSize.x)

// GLSL has no infinity literal; masked attention scores are -inf so that exp() turns them into 0.
#define NEG_INF uintBitsToFloat(0xff800000u)
#define POS_INF uintBitsToFloat(0x7f800000u)

// T5's relative-position bucket depends on j - i alone, so its table is one int per diagonal
// (AttentionShape.BucketIndex): query i and key j of a queryLength-row attention read entry
// j - i + queryLength - 1, and neighbouring queries read neighbouring entries.
uint bucketIndex(uint i, uint j, uint queryLength) { return j + queryLength - 1u - i; }

#endif
