// Row kernels: one workgroup per row, its invocations striding over the row's elements and
// combining their partial results with the workgroup reductions below; or, in kernels that
// declare SUBGROUP_ROWS, one subgroup per row, combining them with subgroup operations alone.
// A workgroup reduction contains barriers, so the whole workgroup must reach it (workgroup-uniform
// control flow: ROW_LOOP and branches on per-row values are fine, branches on the invocation are not).
#ifndef VKPROMPT_REDUCE_GLSL
#define VKPROMPT_REDUCE_GLSL

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_arithmetic : require

// One row per subgroup where SUBGROUP_ROWS > 0 and the subgroups have at least that many
// invocations (the size Rows.SubgroupRows computed CACHE for; a device that runs the pipeline with
// smaller subgroups falls back to a workgroup per row, which the same CACHE still covers). Rows of
// a few hundred elements, T5's attention rows, then need no barrier at all, and a workgroup keeps
// one row in flight per subgroup, as PyTorch's softmax does with a warp per row up to 1024
// elements. A kernel opts in by defining SUBGROUP_ROWS_ID, the constant_id to declare it under.
#ifdef SUBGROUP_ROWS_ID
layout(constant_id = SUBGROUP_ROWS_ID) const uint SUBGROUP_ROWS = 0;
#else
const uint SUBGROUP_ROWS = 0;
#endif
// Dynamically uniform across the whole dispatch (gl_SubgroupSize is the same in every subgroup),
// so the workgroup reductions in the other branch stay in uniform control flow.
#define ROW_PER_SUBGROUP (SUBGROUP_ROWS != 0 && gl_SubgroupSize >= SUBGROUP_ROWS)
// The invocation's index within its row's invocations, and how many those are.
#define ROW_LANE (ROW_PER_SUBGROUP ? gl_SubgroupInvocationID : gl_LocalInvocationID.x)
#define ROW_WIDTH (ROW_PER_SUBGROUP ? gl_SubgroupSize : gl_WorkGroupSize.x)

// Rows beyond what one dispatch launches are taken in turn by the same groups.
#define ROW_LOOP(row, rows) \
    for (uint row = ROW_PER_SUBGROUP ? gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID : gl_WorkGroupID.x; row < uint(rows); \
         row += ROW_PER_SUBGROUP ? gl_NumWorkGroups.x * gl_NumSubgroups : gl_NumWorkGroups.x)

// Each invocation visits the same elements of a row in every pass, so a pass may overwrite in place
// what an earlier pass of the same invocation read.
#define ROW_STRIDE_LOOP(j, n) \
    for (uint j = ROW_LANE; j < uint(n); j += ROW_WIDTH)

// The same elements j of a row of n, counted by t, for kernels that keep them in registers
// between passes (the including shader declares the specialization constant CACHE, which
// Rows.CachedPerInvocation sets): exactly CACHE iterations where CACHE > 0, so the loop unrolls
// and arrays indexed by t stay in registers (those past n are skipped inside); a plain stride
// loop where CACHE is 0 (rows too long to cache, which go through memory).
#define SHARE_LOOP(t, j, n) \
    [[unroll]] for (uint t = 0, j = ROW_LANE; CACHE > 0 ? t < CACHE : j < uint(n); t++, j += ROW_WIDTH) \
        if (j < uint(n))

// One slot per subgroup (the workgroup size bounds the subgroup count whatever the subgroup size).
// Values are stored as bits so every reduction type shares the same scratch.
shared uvec2 reducePartials[gl_WorkGroupSize.x];
shared uvec2 reduceResult;

// A subgroup reduction, one partial per subgroup, then subgroup 0 folds the partials in chunks of
// a subgroup (there are more partials than lanes when the workgroup exceeds subgroupSize²).
// Two barriers: the first publishes the partials, the second the result. They also keep
// back-to-back calls apart: a call's partials are only written after every invocation has read
// the previous result, and subgroup 0 reads the partials before the second barrier.
#define DEFINE_WORKGROUP_REDUCE(NAME, T, SUBGROUP_OP, COMBINE, IDENTITY, TO_BITS, FROM_BITS) \
T NAME(T v) { \
    v = SUBGROUP_OP(v); \
    if (subgroupElect()) reducePartials[gl_SubgroupID] = TO_BITS(v); \
    barrier(); \
    if (gl_SubgroupID == 0) { \
        T acc = IDENTITY; \
        for (uint base = 0; base < gl_NumSubgroups; base += gl_SubgroupSize) { \
            uint i = base + gl_SubgroupInvocationID; \
            acc = COMBINE(acc, SUBGROUP_OP(i < gl_NumSubgroups ? FROM_BITS(reducePartials[i]) : IDENTITY)); \
        } \
        if (subgroupElect()) reduceResult = TO_BITS(acc); \
    } \
    barrier(); \
    return FROM_BITS(reduceResult); \
}

// The reductions of a row, by subgroup or by workgroup as ROW_PER_SUBGROUP says (defined below).
#define DEFINE_ROW_REDUCE(NAME, T, SUBGROUP_OP, WORKGROUP_OP) \
T NAME(T v) { \
    if (ROW_PER_SUBGROUP) return SUBGROUP_OP(v); \
    return WORKGROUP_OP(v); \
}

#define REDUCE_ADD(a, b) ((a) + (b))
#define FLOAT_TO_BITS(v) uvec2(floatBitsToUint(v), 0u)
#define FLOAT_FROM_BITS(u) uintBitsToFloat((u).x)
#define UINT_TO_BITS(v) uvec2((v), 0u)
#define UINT_FROM_BITS(u) ((u).x)

DEFINE_WORKGROUP_REDUCE(workgroupSum, float, subgroupAdd, REDUCE_ADD, 0.0, FLOAT_TO_BITS, FLOAT_FROM_BITS)
DEFINE_WORKGROUP_REDUCE(workgroupSum, vec2, subgroupAdd, REDUCE_ADD, vec2(0.0), floatBitsToUint, uintBitsToFloat)
DEFINE_WORKGROUP_REDUCE(workgroupMax, float, subgroupMax, max, NEG_INF, FLOAT_TO_BITS, FLOAT_FROM_BITS)
DEFINE_WORKGROUP_REDUCE(workgroupMax, uint, subgroupMax, max, 0u, UINT_TO_BITS, UINT_FROM_BITS)
DEFINE_WORKGROUP_REDUCE(workgroupMin, uint, subgroupMin, min, 0xffffffffu, UINT_TO_BITS, UINT_FROM_BITS)
DEFINE_ROW_REDUCE(rowSum, float, subgroupAdd, workgroupSum)
DEFINE_ROW_REDUCE(rowMax, float, subgroupMax, workgroupMax)

#endif
