#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

// C = alpha·A·B (+ C, or an epilogue's: D + dropout(alpha·A·B), dropout(relu(alpha·A·B)), the
// gate's hidden into H; include/matmul_epilogue.glsl)
// of MatMulSpec on the matrix units (tensor cores): A an activation stored
// as fp32, fp16 or bf16 (A_STORAGE; an fp16 A may be the copy of an fp32 one that to_half.comp
// makes), B the frozen weight stored as fp16 or bf16 (or, with VKPROMPT_MATRIX_UNITS=all, any fp32
// operand: B_FP32; an activation B stored in 16 bits is read as the weight of the same bits; or,
// in the COOPMAT_INT8 builds, an int8 weight read as A·Bᵀ, see below), both rounded to fp16 for
// 16x16x16 products that accumulate in fp32, C stored as fp32, fp16 or bf16 (C_STORAGE). The
// 16-bit operands are read straight from their buffers, as the fill widens and rounds them
// anyway: an activation kept in 16 bits needs no to_half copy. The matrix operations
// are those of include/coopmat.glsl: GL_KHR_cooperative_matrix in matmul_coopmat_khr.comp,
// GL_NV_cooperative_matrix in matmul_coopmat.comp (GpuContext picks the one the device reports
// with that exact shape and types, KHR first); ordinary arithmetic in
// matmul_coopmat_emulated.comp, which runs this same staging on any device.
//
// fp16 holds the range of 16-bit weights, but an fp32 or bf16 activation can exceed it (T5's
// feed-forward is known to); values are saturated at ±65504 as they are rounded
// (include/to_half.glsl). The COOPMAT_BF16 builds (matmul_coopmat*_khr_bf16.comp on
// VK_KHR_shader_bfloat16's units, matmul_coopmat*_emulated_bf16.comp emulating them) multiply
// bf16 fragments instead, which hold fp32's range: bf16 operands enter them as stored, fp32 and
// fp16 ones (and an int8 weight's bytes, exact in bf16 too) are rounded to nearest even, and the
// slices hold packed bf16 where this text says halves.
//
// A workgroup of WARPS_M x WARPS_N subgroups owns a BM x BN tile of C, each subgroup TILES_M x
// TILES_N accumulators of 16 x 16. Slices BK deep of A and B are staged in shared memory in fp16,
// each laid out along whichever of its indices is contiguous in global memory, so the fill moves
// runs of four elements ("quads") from consecutive addresses to one 8-byte shared store, and the
// fragment loads say which way round the slice lies. The slices are arrays of uvec2, each four
// packed halves, for those stores (one where four 16-bit stores would be, on the same pipe as the
// fragment loads), as NVIDIA's own cooperative-matrix samples stage in 16-byte vectors; the
// fragment loads count offsets and strides in those vectors. The staging is double-buffered: the next
// slice's global loads are issued before the products of the current one and land in the other
// buffer after them, so their latency hides behind the matrix units and one barrier per slice
// suffices. Rows are padded by 8 halves (16 bytes): the cooperative loads need 16-byte aligned
// rows, and the odd multiple of 16 bytes spreads rows over the banks. Every loop over the
// per-subgroup arrays (accumulators, fragments, the slice in flight) is unrolled so that they can
// stay in registers: indexed by a rolled loop an array lives in local memory (the likely reason
// the portable kernel's first 128x128 tiling ran 11x slower on an H100 than after unrolling).
// A quad in flight is a uvec4: four fp32 values' bits, or, for a 16-bit operand, four 16-bit values
// packed into .xy (.zw unused, left to the compiler to drop), which keeps the registers the
// in-flight slice takes to what it moves: the fewer registers an invocation needs, the more
// workgroups share a multiprocessor to hide each other's loads.
#ifdef COOPMAT_EMULATED
// The emulation's subgroups are only groups of invocations, as wide as NVIDIA's.
const uint SUBGROUP = 32;
#else
layout(constant_id = 1) const uint SUBGROUP = 32;
#endif
layout(constant_id = 2) const uint WARPS_M = 2;
layout(constant_id = 3) const uint WARPS_N = 2;
layout(constant_id = 4) const uint TILES_M = 2;
layout(constant_id = 5) const uint TILES_N = 2;
layout(constant_id = 6) const uint BK = 32;
// 1 where a 16-bit B holds bf16 (a weight, or an activation B), 0 where fp16.
layout(constant_id = 7) const uint WEIGHT_BF16 = 0;
// How an operand is fetched (MatMulKernel.Fetch): 0 neither index contiguous, one element at a
// time; 1 contiguous along k; 2 contiguous along m (A) or n (B); 3 and 4 as 1 and 2 with every
// quad starting on a multiple of 4 elements, so a quad is one 16-byte (A) or 8-byte (B) load.
layout(constant_id = 8) const uint A_FETCH = 1;
layout(constant_id = 9) const uint B_FETCH = 1;
// 1 where C's rows start on multiples of 4 elements: whole accumulators of interior tiles are
// then loaded (accumulating, with alpha 1) and stored directly rather than through shared memory.
layout(constant_id = 10) const uint C_ALIGNED = 0;
// 1 where B is fp32 rather than 16-bit: it is then rounded to fp16 as A is (WEIGHT_BF16 unused).
layout(constant_id = 11) const uint B_FP32 = 0;
// How A stores its elements (include/storage.glsl's codes): fp16 ones (an fp16 activation, or
// the copy of an fp32 one that to_half.comp makes) enter the units as they are, bf16 ones are
// widened and rounded to fp16 in the fill as fp32 ones are.
layout(constant_id = 12) const uint A_STORAGE = 0;
// How C stores its elements: the fp32 sums are narrowed as they are stored (narrowStored), so a
// 16-bit C goes through shared memory, where every element passes one invocation, rather than
// the cooperative store, which writes fp32 accumulators.
layout(constant_id = 13) const uint C_STORAGE = 0;
// An int8 B (WeightPrecision.Int8) is multiplied as its bytes q, which fp16 holds exactly, and
// each column n of the sum is scaled by row n's scale as it is stored: C = alpha · scale_n ·
// sum_k A[m,k] q[n,k], the int8 values and their products exact on the matrix units. That takes
// the table read as A·Bᵀ (bStrideK = 1, its rows the columns of C; DevicePlan.OnMatrixUnits):
// in A·B the scale varies along the sum and would have to be folded into A or B before rounding.
// The scaling needs each element of the sum, so every tile is stored through shared memory.
#ifdef COOPMAT_INT8
const bool B_INT8 = true;
#else
const bool B_INT8 = false;
#endif
// Quads of B in flight hold four fp32 values' bits (else four packed halves).
const bool B_BITS32 = B_FP32 != 0 || B_INT8;
#include "storage.glsl"
#include "to_half.glsl"

const uint WG = gl_WorkGroupSize.x;
const uint BM = WARPS_M * TILES_M * 16;
const uint BN = WARPS_N * TILES_N * 16;
// Shared layouts: k-major (slice rows along m or n, each BK + 8 halves) unless the operand is
// contiguous along m or n, then [k][m] or [k][n] rows of BM + 8 or BN + 8.
const bool A_KMAJOR = A_FETCH != 2 && A_FETCH != 4;
const bool B_KMAJOR = B_FETCH != 2 && B_FETCH != 4;
const bool A_VEC = A_FETCH >= 3;
const bool B_VEC = B_FETCH >= 3;
const uint SA = A_KMAJOR ? BK + 8 : BM + 8;
const uint SB = B_KMAJOR ? BK + 8 : BN + 8;
const uint A_SIZE = A_KMAJOR ? BM * SA : BK * SA;
const uint B_SIZE = B_KMAJOR ? BN * SB : BK * SB;
// Quads per slice, and per invocation (rounded up; the surplus ones are skipped).
const uint A_QUADS = BM * BK / 4;
const uint B_QUADS = BN * BK / 4;
const uint A_PER = (A_QUADS + WG - 1) / WG;
const uint B_PER = (B_QUADS + WG - 1) / WG;
// Edge tiles' accumulators (and all of a 16-bit C's) pass on their way to C through a 16 x 16
// fp32 tile per subgroup (a cooperative store cannot stop at the matrix's edge), staged in sa
// once the slices are done with: its memory would otherwise take a sixth of the 48 KiB NVIDIA
// gives a workgroup.
const uint STAGING = WARPS_M * WARPS_N * 128;
const uint SA_LENGTH = 2 * A_SIZE / 4 > STAGING ? 2 * A_SIZE / 4 : STAGING;
shared uvec2 sa[SA_LENGTH];
shared uvec2 sb[2 * B_SIZE / 4];

layout(std430, binding = 0) readonly buffer BufA { float a[]; };
layout(std430, binding = 0) readonly buffer BufA4 { vec4 a4[]; };
layout(std430, binding = 0) readonly buffer BufAh { uint16_t ah[]; };
layout(std430, binding = 0) readonly buffer BufAh4 { uvec2 ah4[]; };
layout(std430, binding = 1) readonly buffer BufB { uint16_t b[]; };
layout(std430, binding = 1) readonly buffer BufB4 { uvec2 b4[]; };
layout(std430, binding = 1) readonly buffer BufBf { float bf[]; };
layout(std430, binding = 1) readonly buffer BufBf4 { vec4 bf4[]; };
layout(std430, binding = 2) buffer BufC { float c[]; };
layout(std430, binding = 2) buffer BufCh { uint16_t ch[]; };
#ifdef COOPMAT_INT8
#include "int8.glsl"
layout(std430, binding = 1) readonly buffer BufB8 { uint b8[]; };
layout(std430, binding = 3) readonly buffer BufBScale { float bScale[]; };
#define EPILOGUE_BINDING 4
#else
#define EPILOGUE_BINDING 3
#endif
// The residual epilogue's addend D (the gate epilogue's a) and the gate's hidden H, stored as C is
// (include/matmul_epilogue.glsl).
layout(std430, binding = EPILOGUE_BINDING) readonly buffer BufD { float addend[]; };
layout(std430, binding = EPILOGUE_BINDING) readonly buffer BufDh { uint16_t addendh[]; };
layout(std430, binding = EPILOGUE_BINDING + 2) writeonly buffer BufH { float hidden[]; };
layout(std430, binding = EPILOGUE_BINDING + 2) writeonly buffer BufHh { uint16_t hiddenh[]; };
#include "matmul_push.glsl"
#define COOPMAT_ADDEND
#include "coopmat.glsl"

float readC(uint i) { return C_STORAGE == STORAGE_FP32 ? c[i] : widenStored(uint(ch[i]), C_STORAGE); }
float readD(uint i) { return C_STORAGE == STORAGE_FP32 ? addend[i] : widenStored(uint(addendh[i]), C_STORAGE); }

void writeC(uint i, float v) {
    if (C_STORAGE == STORAGE_FP32) c[i] = v;
    else ch[i] = uint16_t(narrowStored(v, C_STORAGE));
}

void writeH(uint i, float v) {
    if (C_STORAGE == STORAGE_FP32) hidden[i] = v;
    else hiddenh[i] = uint16_t(narrowStored(v, C_STORAGE));
}

float asStored(float v) { return C_STORAGE == STORAGE_FP32 ? v : widenStored(narrowStored(v, C_STORAGE), C_STORAGE); }
#define EPILOGUE_ID 14
#include "matmul_epilogue.glsl"

// Quad q of a slice as (row index along m or n, k), with its four elements running along the
// operand's contiguous index: k in k-major slices, m or n otherwise.
uvec2 quadAt(uint q, bool kMajor, uint rows) {
    return kMajor ? uvec2(q / (BK / 4), q % (BK / 4) * 4) : uvec2(q % (rows / 4) * 4, q / (rows / 4));
}

// Four halves zero-extended in .xyzw, packed into .xy as a quad in flight holds them.
uvec4 packQuad(uvec4 h) {
    return uvec4(h.x | (h.y << 16), h.z | (h.w << 16), 0, 0);
}

// The quad of A at (row of the tile, k), as it is stored (fp32 bits or packed halves) until it is
// written to shared memory; where "edge", each element is checked against the rows the tile has
// and K.
uvec4 fetchA(uint base, uint row, uint k, bool edge, uint rows) {
    const uint at = base + row * pc.aStrideM + k * pc.aStrideK;
    const uint step = A_KMAJOR ? pc.aStrideK : pc.aStrideM;
    if (!edge && A_VEC) return A_STORAGE != STORAGE_FP32 ? uvec4(ah4[at >> 2], 0, 0) : floatBitsToUint(a4[at >> 2]);
    uvec4 v = uvec4(0);
    [[unroll]] for (uint i = 0; i < 4; i++) {
        const bool inside = A_KMAJOR ? row < rows && k + i < pc.K : row + i < rows && k < pc.K;
        if (!edge || inside) v[i] = A_STORAGE != STORAGE_FP32 ? uint(ah[at + i * step]) : floatBitsToUint(a[at + i * step]);
    }
    return A_STORAGE != STORAGE_FP32 ? packQuad(v) : v;
}

// Elements 4w .. 4w+3 of B, and element i, as a quad in flight holds them (an int8 weight's
// bytes as fp32 values, unscaled).
uvec4 bWord(uint w) {
#ifdef COOPMAT_INT8
    return floatBitsToUint(widenInt8(b8[w], 1.0));
#else
    return B_FP32 != 0 ? floatBitsToUint(bf4[w]) : uvec4(b4[w], 0, 0);
#endif
}

uint bElement(uint i) {
#ifdef COOPMAT_INT8
    return floatBitsToUint(widenInt8(b8[i >> 2], i & 3u, 1.0));
#else
    return B_FP32 != 0 ? floatBitsToUint(bf[i]) : uint(b[i]);
#endif
}

// B's quad, likewise (a 16-bit weight's halves, or fp32 bits: an fp32 operand's, an int8 weight's bytes).
uvec4 fetchB(uint base, uint col, uint k, bool edge, uint cols) {
    const uint at = base + col * pc.bStrideN + k * pc.bStrideK;
    const uint step = B_KMAJOR ? pc.bStrideK : pc.bStrideN;
    if (!edge && B_VEC) return bWord(at >> 2);
    uvec4 v = uvec4(0);
    [[unroll]] for (uint i = 0; i < 4; i++) {
        const bool inside = B_KMAJOR ? col < cols && k + i < pc.K : col + i < cols && k < pc.K;
        if (!edge || inside) v[i] = bElement(at + i * step);
    }
    return B_BITS32 ? v : packQuad(v);
}

// What column n of the sum is multiplied by as it is stored: alpha, times the scale of the int8
// table's row n (at element (0, n) of the batch, over its row length bStrideN).
float columnScale(uint z1, uint z2, uint n) {
#ifdef COOPMAT_INT8
    return pc.alpha * bScale[(pc.bOffset + z1 * pc.bStrideB1 + z2 * pc.bStrideB2 + n * pc.bStrideN) / max(pc.bStrideN, 1u)];
#else
    return pc.alpha;
#endif
}

uint cAt(uint cBase, uint tileM, uint tileN, uint warpM, uint warpN, uint i, uint j) {
    return cBase + (tileM + (warpM * TILES_M + i) * 16) * pc.cStrideM + tileN + (warpN * TILES_N + j) * 16;
}

// How the fragments, and so the slices, hold their elements.
#ifdef COOPMAT_BF16
const uint FRAGMENT_STORAGE = STORAGE_BF16;
#else
const uint FRAGMENT_STORAGE = STORAGE_FP16;
#endif

// Four fp32 values as the four packed fragment elements a slice holds: fp16 rounded and saturated
// (toHalf), or bf16 rounded to nearest even (narrowBf16, which keeps fp32's range).
uvec2 toFragments(vec4 v) {
    if (FRAGMENT_STORAGE == STORAGE_FP16) return toHalf(v);
    const uvec4 h = narrowStored(v, STORAGE_BF16);
    return uvec2(h.x | (h.y << 16), h.z | (h.w << 16));
}

// A quad in flight of four packed 16-bit values stored as `storage` (fp16 or bf16), as the four
// packed elements a slice holds: as they are where the fragments hold the same type, else
// widened, then rounded (and, to fp16, saturated) as fp32 is.
uvec2 halvesToFragments(uvec4 q, uint storage) {
    if (storage == FRAGMENT_STORAGE) return q.xy;
    return toFragments(widenStored(uvec4(q.x & 0xffffu, q.x >> 16, q.y & 0xffffu, q.y >> 16), storage));
}

// A quad in flight of A, or of B, as the four packed elements a slice holds.
uvec2 aToFragments(uvec4 q) {
    return A_STORAGE == STORAGE_FP32 ? toFragments(uintBitsToFloat(q)) : halvesToFragments(q, A_STORAGE);
}

uvec2 bToFragments(uvec4 q) {
    return B_BITS32 ? toFragments(uintBitsToFloat(q)) : halvesToFragments(q, WEIGHT_BF16 != 0 ? STORAGE_BF16 : STORAGE_FP16);
}

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint warp = cmSubgroup();
    const uint lane = cmLane();
    const uint warpM = warp / WARPS_N;
    const uint warpN = warp % WARPS_N;
    const uint tileM = gl_WorkGroupID.y * BM;
    const uint tileN = gl_WorkGroupID.x * BN;
    // Uniform per workgroup: interior tiles of a K that slices evenly fetch without checks.
    const bool edge = tileM + BM > pc.M || tileN + BN > pc.N || pc.K % BK != 0;
    const uint slices = (pc.K + BK - 1) / BK;
    // Whole accumulators go straight between an fp32 C and the matrix units (also uniform),
    // starting from C, or from the residual epilogue's D, where the sum is added to it with alpha
    // 1; the epilogue's dropout needs each element's index, so it takes the staged way, as do the
    // gate and relu epilogues, whose work is per element.
    const bool startsFrom = pc.accumulate != 0 || EPILOGUE == EPILOGUE_RESIDUAL;
    const bool direct = !B_INT8 && C_STORAGE == STORAGE_FP32 && C_ALIGNED != 0 && tileM + BM <= pc.M && tileN + BN <= pc.N
                        && (!startsFrom || pc.alpha == 1.0) && pc.dropThreshold == 0 && (EPILOGUE == 0 || EPILOGUE == EPILOGUE_RESIDUAL);

    // Batches beyond the device's z-dimension limit wrap round; z is uniform per workgroup, so
    // the barriers inside stay in uniform control flow.
    for (uint z = gl_WorkGroupID.z; z < pc.batch1 * pc.batch2; z += gl_NumWorkGroups.z) {
        const uint z1 = z / pc.batch2;
        const uint z2 = z % pc.batch2;
        const uint aBase = pc.aOffset + z1 * pc.aStrideB1 + z2 * pc.aStrideB2 + tileM * pc.aStrideM;
        const uint bBase = pc.bOffset + z1 * pc.bStrideB1 + z2 * pc.bStrideB2 + tileN * pc.bStrideN;

        const uint cBase = pc.cOffset + z1 * pc.cStrideB1 + z2 * pc.cStrideB2;
        CM_ACC acc[TILES_M * TILES_N];
        [[unroll]] for (uint i = 0; i < TILES_M; i++) {
            [[unroll]] for (uint j = 0; j < TILES_N; j++) {
                // Summing onto C or D (alpha 1) starts from it, which spares a matrix addition at
                // the end (and glslang 11's optimizer crashes on coopmat + coopmat). D is read at
                // C's addresses. (Unlike the staged way, the sum is then D + the terms in order
                // rather than D + their sum: within the units' own rounding.)
                if (direct && pc.accumulate != 0)
                    cmLoadC(acc[i * TILES_N + j], cAt(cBase, tileM, tileN, warpM, warpN, i, j), pc.cStrideM);
                else if (direct && EPILOGUE == EPILOGUE_RESIDUAL)
                    cmLoadD(acc[i * TILES_N + j], cAt(cBase, tileM, tileN, warpM, warpN, i, j), pc.cStrideM);
                else
                    acc[i * TILES_N + j] = cmZero();
            }
        }

        // The slice in flight between global and shared memory.
        uvec4 ra[A_PER];
        uvec4 rb[B_PER];
        for (uint s = 0; s <= slices; s++) {
            // Slice s - 1, fetched during the previous products, goes to its buffer; once every
            // invocation is past the barrier, the other buffer's readers are done too.
            if (s > 0) {
                const uint buf = (s - 1) & 1;
                [[unroll]] for (uint i = 0; i < A_PER; i++) {
                    const uint q = tid + i * WG;
                    if (A_QUADS % WG == 0 || q < A_QUADS) {
                        const uvec2 rk = quadAt(q, A_KMAJOR, BM);
                        sa[(buf * A_SIZE + (A_KMAJOR ? rk.x * SA + rk.y : rk.y * SA + rk.x)) / 4] = aToFragments(ra[i]);
                    }
                }
                [[unroll]] for (uint i = 0; i < B_PER; i++) {
                    const uint q = tid + i * WG;
                    if (B_QUADS % WG == 0 || q < B_QUADS) {
                        const uvec2 rk = quadAt(q, B_KMAJOR, BN);
                        sb[(buf * B_SIZE + (B_KMAJOR ? rk.x * SB + rk.y : rk.y * SB + rk.x)) / 4] = bToFragments(rb[i]);
                    }
                }
                barrier();
            }
            if (s < slices) {
                const uint k0 = s * BK;
                [[unroll]] for (uint i = 0; i < A_PER; i++) {
                    const uint q = tid + i * WG;
                    if (A_QUADS % WG == 0 || q < A_QUADS) {
                        const uvec2 rk = quadAt(q, A_KMAJOR, BM);
                        ra[i] = fetchA(aBase, rk.x, k0 + rk.y, edge && (tileM + rk.x + 4 > pc.M || k0 + rk.y + 4 > pc.K), pc.M - tileM);
                    }
                }
                [[unroll]] for (uint i = 0; i < B_PER; i++) {
                    const uint q = tid + i * WG;
                    if (B_QUADS % WG == 0 || q < B_QUADS) {
                        const uvec2 rk = quadAt(q, B_KMAJOR, BN);
                        rb[i] = fetchB(bBase, rk.x, k0 + rk.y, edge && (tileN + rk.x + 4 > pc.N || k0 + rk.y + 4 > pc.K), pc.N - tileN);
                    }
                }
            }
            if (s > 0) {
                const uint buf = (s - 1) & 1;
                [[unroll]] for (uint kk = 0; kk < BK; kk += 16) {
                    CM_FRAG_A fa[TILES_M];
                    CM_FRAG_B fb[TILES_N];
                    [[unroll]] for (uint i = 0; i < TILES_M; i++) {
                        const uint r = (warpM * TILES_M + i) * 16;
                        cmLoadA(fa[i], (buf * A_SIZE + (A_KMAJOR ? r * SA + kk : kk * SA + r)) / 4, SA / 4, !A_KMAJOR);
                    }
                    [[unroll]] for (uint j = 0; j < TILES_N; j++) {
                        const uint r = (warpN * TILES_N + j) * 16;
                        cmLoadB(fb[j], (buf * B_SIZE + (B_KMAJOR ? r * SB + kk : kk * SB + r)) / 4, SB / 4, B_KMAJOR);
                    }
                    [[unroll]] for (uint i = 0; i < TILES_M; i++)
                        [[unroll]] for (uint j = 0; j < TILES_N; j++)
                            acc[i * TILES_N + j] = cmMulAdd(fa[i], fb[j], acc[i * TILES_N + j]);
                }
            }
        }

        // Every subgroup's last products have read the slices before any staging (or the next
        // batch's fill) overwrites them.
        barrier();
        if (direct) {
            [[unroll]] for (uint i = 0; i < TILES_M; i++)
                [[unroll]] for (uint j = 0; j < TILES_N; j++) {
                    const uint at = cAt(cBase, tileM, tileN, warpM, warpN, i, j);
                    if (startsFrom) cmStoreC(acc[i * TILES_N + j], at, pc.cStrideM);
                    else cmStoreC(cmScale(acc[i * TILES_N + j], pc.alpha), at, pc.cStrideM);
                }
        } else {
            [[unroll]] for (uint i = 0; i < TILES_M; i++) {
                [[unroll]] for (uint j = 0; j < TILES_N; j++) {
                    cmStoreStaging(acc[i * TILES_N + j], warp * 128);
                    barrier();
                    const uint m0 = tileM + (warpM * TILES_M + i) * 16;
                    const uint n0 = tileN + (warpN * TILES_N + j) * 16;
                    for (uint e = lane; e < 256; e += SUBGROUP) {
                        const uint m = m0 + e / 16, n = n0 + e % 16;
                        if (m < pc.M && n < pc.N)
                            storeC(cBase + m * pc.cStrideM + n, columnScale(z1, z2, n), uintBitsToFloat(sa[warp * 128 + e / 2][e % 2]));
                    }
                    // The next accumulator reuses this subgroup's staging tile.
                    barrier();
                }
            }
        }
    }
}
