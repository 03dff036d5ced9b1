// What fused_attention.comp and fused_attention_backward.comp share: the shape, the optional
// inputs and the score of one (query, key) pair. The backward recomputes each probability as
// exp(score - logsumexp) from the forward's logsumexp, so both shaders form every score here,
// with the same operations in the same order.
//
// q, o, dO, dq are [B, queryRows, H·D] and k, v, dk, dv [B, keyRows, H·D] activations (head h
// is the column block h·D of a row); queryRows ≥ queryLength and keyRows ≥ keyLength because a
// KV cache holds more rows than are attended. logsumexp is [B, H, queryLength].
#ifndef VKPROMPT_FUSED_ATTENTION_GLSL
#define VKPROMPT_FUSED_ATTENTION_GLSL

#include "philox.glsl"
#include "attention_options.glsl"

#extension GL_EXT_control_flow_attributes : require

// Each invocation owns one row (a query, or a key in the dk/dv pass) and streams over the other
// operand BLOCK rows at a time.
// STAGED (GPUs): the workgroup first copies each block to shared memory, so every element is
// read from memory once per workgroup, and the invocations then all read the same shared
// element at once (a broadcast).
// Not staged (CPU devices): the invocations read the block straight from memory, all at the
// same address at a time. lavapipe's shared memory is ordinary memory behind emulated
// barriers, so staging only adds copies there.
layout(constant_id = 1) const uint BLOCK = 16;
layout(constant_id = 2) const uint D = 64;
layout(constant_id = 3) const bool STAGED = true;

// D is d_kv. Each invocation keeps its own rows (q, o accumulator, ...) as arrays of D floats, and
// every loop that indexes them is unrolled so that they live in registers: with the loops left
// rolled, lavapipe (Mesa 22.3) keeps such arrays in scratch memory and, from d_kv 64 up, lost
// updates to them (the dk/dv pass came out wrong).
#define FOR_D(d) [[unroll]] for (uint d = 0; d < D; d++)

// The streamed rows are read four elements at a time (through vec4 views of the buffers where
// d_kv is a multiple of 4): lavapipe turns every load of the unstaged variant into a loop over
// the SIMD lanes, whatever its width, and vec4 loads ran its forward 2.5x faster. Sums still
// run over d in order, one fma at a time.
#define FOR_D4(d) [[unroll]] for (uint d = 0; d < D; d += 4)

// Elements d..d+3 of a row whose element d is X[at], 0 past the row's end; FETCH4 reads one
// vec4 through the buffer's vec4 view X4 when d_kv allows.
#define LOAD4(X, at, d) vec4(X[at], (d) + 1 < D ? X[(at) + 1] : 0.0, (d) + 2 < D ? X[(at) + 2] : 0.0, (d) + 3 < D ? X[(at) + 3] : 0.0)
#define FETCH4(X, X4, at, d) (D % 4 == 0 ? X4[(at) >> 2] : LOAD4(X, at, d))

// The activations q, k, v and o (bindings 4-7) may each be stored in 16 bits (include/storage.glsl)
// where STORED_16BIT is defined: the including shader then declares each of them also as
// uint16_t[] (X##h) and, where it reads four at a time, u16vec4[] (X##h4), and reads or writes
// the view its storage constant names. A module declaring 16-bit buffers needs the device's
// 16-bit storage, which the portable kernels must not (they are what devices without it run), so
// they have two builds sharing their kernel: fused_attention.comp and _backward.comp for fp32
// activations, fused_attention_half.comp and _backward_half.comp for any storage. The builds on
// the matrix units need 16-bit storage anyway and have only the second kind. dO, the logsumexp
// and the gradients are fp32 everywhere.
#ifdef STORED_16BIT
#include "storage.glsl"
layout(constant_id = 7) const uint Q_STORAGE = STORAGE_FP32;
layout(constant_id = 8) const uint K_STORAGE = STORAGE_FP32;
layout(constant_id = 9) const uint V_STORAGE = STORAGE_FP32;
layout(constant_id = 10) const uint O_STORAGE = STORAGE_FP32;
// Element `at` of activation X, widened to fp32.
#define ACT(X, storage, at) ((storage) == STORAGE_FP32 ? X[at] : widenStored(uint(X##h[at]), storage))
// Elements at..at+3 (at a multiple of 4), through the vec4 or u16vec4 view.
#define ACT4(X, storage, at) ((storage) == STORAGE_FP32 ? X##4[(at) >> 2] : widenStored(uvec4(X##h4[(at) >> 2]), storage))
// Stores `value` as element `at` of activation X, narrowed to its storage.
#define STORE_ACT(X, storage, at, value) \
    if ((storage) == STORAGE_FP32) X[at] = (value); else X##h[at] = uint16_t(narrowStored(value, storage))
#else
#define ACT(X, storage, at) X[at]
#define ACT4(X, storage, at) X##4[(at) >> 2]
#define STORE_ACT(X, storage, at, value) X[at] = (value)
#endif

// FETCH4 of an activation that may be 16-bit.
#define FETCH_ACT4(X, storage, at, d)                                                           \
    (D % 4 == 0 ? ACT4(X, storage, at)                                                          \
                : vec4(ACT(X, storage, at), (d) + 1 < D ? ACT(X, storage, (at) + 1) : 0.0,        \
                       (d) + 2 < D ? ACT(X, storage, (at) + 2) : 0.0, (d) + 3 < D ? ACT(X, storage, (at) + 3) : 0.0))

// s + x[d..d+3]·e, leaving out the elements past D.
float dot4(float x[D], uint d, vec4 e, float s) {
    s = fma(x[d], e.x, s);
    if (d + 1 < D) s = fma(x[d + 1], e.y, s);
    if (d + 2 < D) s = fma(x[d + 2], e.z, s);
    if (d + 3 < D) s = fma(x[d + 3], e.w, s);
    return s;
}

// acc[d..d+3] += p·e, leaving out the elements past D.
void axpy4(inout float acc[D], uint d, float p, vec4 e) {
    acc[d] = fma(p, e.x, acc[d]);
    if (d + 1 < D) acc[d + 1] = fma(p, e.y, acc[d + 1]);
    if (d + 2 < D) acc[d + 2] = fma(p, e.z, acc[d + 2]);
    if (d + 3 < D) acc[d + 3] = fma(p, e.w, acc[d + 3]);
}

// Absent inputs are off in flags; their bindings then hold a stand-in the shaders never read.
layout(std430, binding = 0) readonly buffer Buckets { int bucket[]; };
layout(std430, binding = 1) readonly buffer BiasWeight { float biasWeight[]; };
layout(std430, binding = 2) readonly buffer KeyMask { int keyMask[]; };
layout(std430, binding = 3) readonly buffer Seed { uint seed; };

layout(push_constant) uniform Push {
    uint batch; uint heads; uint queryLength; uint keyLength;
    uint queryRows; uint keyRows;
    uint flags; int queryOffset; // flags: the bits of include/attention_options.glsl
    // Dropout on the probabilities, as DropoutKernel computes them on the host.
    uint threshold; float scale; uint stream;
} pc;

// First element of head h of row pos of batch entry b, in an activation with `rows` rows per
// entry; consecutive rows are rowStride() apart.
uint rowStride() { return pc.heads * D; }
uint rowBase(uint b, uint rows, uint pos, uint h) { return (b * rows + pos) * rowStride() + h * D; }

// The biased score of query i against key j given their dot product, -inf where the key is
// masked (padding, or past i + queryOffset when causal).
float score(float dot, uint b, uint h, uint i, uint j) {
    bool masked = ((pc.flags & CAUSAL) != 0u && int(j) > int(i) + pc.queryOffset)
               || ((pc.flags & HAS_MASK) != 0u && keyMask[b * pc.keyLength + j] == 0);
    if (masked) return NEG_INF;
    if ((pc.flags & HAS_BIAS) != 0u) dot += biasWeight[uint(bucket[bucketIndex(i, j, pc.queryLength)]) * pc.heads + h];
    return dot;
}

// The draw DropoutKernel makes for element (b, h, i, j) of the [B, H, Lq, Lk] probabilities, so
// the fused and unfused paths drop exactly the same elements.
bool kept(uint b, uint h, uint i, uint j) {
    if ((pc.flags & DROPOUT) == 0u) return true;
    uint index = ((b * pc.heads + h) * pc.queryLength + i) * pc.keyLength + j;
    return philox2x32_10(uvec2(index, pc.stream), seed).x >= pc.threshold;
}

// Keys a workgroup of queries below queryEnd visits: causal attention hides every later key
// from all of them.
uint visibleKeys(uint queryEnd) {
    if ((pc.flags & CAUSAL) == 0u) return pc.keyLength;
    return uint(clamp(int(queryEnd) + pc.queryOffset, 0, int(pc.keyLength)));
}

// The first query that sees key j under causal attention; no earlier query sees a later key.
uint firstQuerySeeing(uint j) {
    if ((pc.flags & CAUSAL) == 0u) return 0u;
    return uint(clamp(int(j) - pc.queryOffset, 0, int(pc.queryLength)));
}

#endif
