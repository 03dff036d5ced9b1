// What the fused attention on the matrix units (fused_attention_coopmat.glsl's forward,
// fused_attention_coopmat_backward.glsl) shares: the workgroup's shape, its shared memory and the
// moves between them. Same contract as fused_attention.comp and its backward (bias, masks,
// causality, dropout, the logsumexp the backward recomputes the probabilities from), with every
// product on 16x16x16 fp16 matrix operations summing in fp32, as VKPROMPT_MATRIX_UNITS=all's unfused
// products do: q, k, v, dO, the probabilities and dS are rounded to fp16 (saturating,
// include/to_half.glsl) where they enter a product, scores, softmax statistics, outputs and
// gradients stay fp32.
//
// A workgroup is WARPS subgroups, each owning 16 rows (queries, or keys in the dk/dv pass) of one
// (batch entry, head), and streams over blocks of BLOCK rows of the other operand, staged in
// shared memory as fp16 by the whole workgroup. A subgroup's products land in 16x16 fp32 tiles of
// its own scratch (a cooperative accumulator cannot be read element by element), where its
// invocations, PARTS to a row, each owning a contiguous run of columns (or in subgroups of 8,
// LANE_ROWS whole rows each), apply the softmax, and
// write back the fp16 operand of the next product over the same scratch. The running
// maximum's rescaling is applied to the output in those invocations' registers for the same
// reason. The workgroup meets at a barrier around each staging of shared operands; a subgroup
// alone around the steps on its scratch (subgroupSync), so that the others are not held up by
// it. Control flow is uniform across the workgroup throughout.
//
// The including kernel defines SA_LENGTH and SB_LENGTH (in uvec2s, from the constants below),
// SCRATCH (a subgroup's scratch, in uvec2s, at least 16 x D floats) and whether it is COOPMAT_KHR
// or COOPMAT_EMULATED.
//
// q, k, v and o may each be stored as fp32, fp16 or bf16 (include/fused_attention.glsl): a
// module on the matrix units needs 16-bit storage anyway, so there is one build for all. An
// fp16 operand is staged as it is stored; the others are rounded to fp16 as they are staged.
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#define COOPMAT_NO_C
#define STORED_16BIT
#include "common.glsl"
#include "fused_attention.glsl"

// The subgroup the kernel is specialised for (DevicePlan.FusedAttentionSubgroupSize): the units',
// or the width of the emulation's groups of invocations; 8, 16, 32 or 64 (FusedAttentionKernel
// checks; the emulated build for 8 and 16 is the _narrow one, whose accumulators make room).
layout(constant_id = 4) const uint SUBGROUP = 32;
layout(constant_id = 5) const uint WARPS = 4;
#include "to_half.glsl"

const uint WG = WARPS * SUBGROUP;
// Rows of the workgroup's own operand. A subgroup's 16 rows go to its invocations as whole
// rows where they are fewer than 16 (LANE_ROWS each: Intel's Xe-HPG units and lavapipe's run
// subgroups of 8), else PARTS invocations to a row, each a contiguous run of its columns.
// Invocation `lane`'s rows are lane % 16 + r·SUBGROUP for r < LANE_ROWS (laneRow), its part lane / 16.
const uint ROWS = WARPS * 16;
const uint PARTS = SUBGROUP >= 16 ? SUBGROUP / 16 : 1;
const uint LANE_ROWS = SUBGROUP >= 16 ? 1 : 16 / SUBGROUP;
uint laneRow(uint lane, uint r) { return lane % 16 + r * SUBGROUP; }
// Row pitches in halves of a staged D-wide operand and of a BLOCK-wide fp16 one, padded by 8
// halves (16 bytes) as include/matmul_coopmat.glsl pads its slices: cooperative loads need
// 16-byte aligned rows, and the odd multiple of 16 bytes spreads rows over the banks.
const uint SD = D + 8;
const uint SP = BLOCK + 8;

// A subgroup's products reach its scratch as 16x16 fp32 tiles, each column-major (a column's 16
// rows in 16 consecutive floats), so that the 16 invocations reading one column at once, one row
// each, read 16 consecutive floats. The PARTS invocations of a row read columns columnsPerPart
// apart at once, columnsPerPart / 16 tiles; tiles 128 + 8 / (that) uvec2s apart put those reads
// 16 four-byte banks (of 32) apart, so a subgroup's reads of its columns meet no bank twice.
#define TILE_STRIDE(columnsPerPart) ((columnsPerPart) / 16 == 1 ? 136u : (columnsPerPart) / 16 == 2 ? 132u : 130u)
const uint TS_BLOCK = TILE_STRIDE(BLOCK / PARTS);
const uint TS_D = TILE_STRIDE(D / PARTS);

// A barrier among the invocations of one subgroup, ordering their accesses to shared memory. The
// emulation's subgroups are only groups of invocations (include/coopmat.glsl), which a subgroup
// barrier would not order: there it is the workgroup's.
#ifdef COOPMAT_EMULATED
void subgroupSync() { barrier(); }
#else
#extension GL_KHR_shader_subgroup_basic : require
void subgroupSync() {
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}
#endif

shared uvec2 sa[SA_LENGTH];
shared uvec2 sb[SB_LENGTH];
#include "coopmat.glsl"

// Elements at..at+3 (at a multiple of 4) of activation X as four packed fp16, the matrix units'
// operand: as stored where X is fp16, else widened and rounded by toHalf.
#define ACT_HALVES(X, storage, at) \
    ((storage) == STORAGE_FP16 ? packHalves(uvec4(X##h4[(at) >> 2])) : toHalf(ACT4(X, storage, at)))
uvec2 packHalves(uvec4 h) { return uvec2(h.x | h.y << 16, h.z | h.w << 16); }

// Rows first .. first + count of head h of batch entry b of an activation (HALVES(at) its
// elements at..at+3 as packed fp16, rowsPerEntry rows per entry, length of them attended) into
// shared array S as fp16 rows SD halves apart from half `at`; rows past length are zeros. Every
// invocation takes part.
#define STAGE_ROWS(S, at, HALVES, rowsPerEntry, length, b, h, first, count)                       \
    for (uint e = gl_LocalInvocationIndex; e < (count) * (D / 4); e += WG) {                        \
        const uint r = e / (D / 4), d = e % (D / 4) * 4, pos = (first) + r;                          \
        S[((at) + r * SD + d) / 4] = pos < (length) ? HALVES(rowBase(b, rowsPerEntry, pos, h) + d) : uvec2(0); \
    }

// A 16 x 16·n product to the scratch at `at`, tiles ts apart.
#define STAGE_TILE(m, at, t, ts) cmStoreShared(m, (at) + (t) * (ts), 8, true)

// Element (r, col) of 16 rows staged from uvec2 `at` by STAGE_TILE with tile stride ts.
float staged(uint at, uint ts, uint r, uint col) {
    return uintBitsToFloat(sa[at + col / 16 * ts + col % 16 * 8 + r / 2][r % 2]);
}

// Four consecutive columns of row r of a 16-row fp16 operand SP halves a row, from uvec2 `at`.
void putHalves(uint at, uint r, uint col, vec4 x) {
    sa[at + (r * SP + col) / 4] = toHalf(x);
}
