// The matrix product of MatMulSpec, shared by matmul.comp (every operand fp32), matmul_half.comp
// (any of A, B and C stored in 16 bits), matmul_int8.comp (B stored as int8 rows with a scale
// each) and matmul_int8_half.comp (int8 B with 16-bit A or C). The including shader declares how
// the operands are read and written (include/matmul_operands.glsl, include/matmul_int8_b.glsl):
//   float loadA(uint i), loadB(uint i)     element i of A, of B, as fp32;
//   vec4 loadA4(uint i), loadB4(uint i)    elements 4i .. 4i+3, as fp32;
//   float readC(uint i), vec4 readC4(uint i), writeC(uint i, float), writeC4(uint i, vec4)
//                                          C's element i (or group i of four), widened as read
//                                          and narrowed as written where C is 16-bit;
//   float readD(uint i), vec4 readD4(uint i) the residual epilogue's addend (the gate's a), likewise;
//   writeH(uint i, float), writeH4(uint i, vec4), asStored(float) the gate epilogue's hidden H
//                                          and C's rounding.
// C[z1,z2][m,n] = alpha * sum_k A[z1,z2][m,k] B[z1,z2][k,n] (+ C[z1,z2][m,n] when accumulating),
// or with an epilogue (include/matmul_epilogue.glsl, which finishes every element each store
// path writes) D + dropout(...) of it (residual), dropout(relu(...)) (relu), or the gate's hidden
// dropout(act(D)·...) into H,
// every operand addressed through element strides (MatMulSpec.cs describes the vocabulary).
// A workgroup owns a BM x BN tile of C for one (z1, z2) at a time, each invocation TM x TN of it.
// Sums run over k in order, in fp32, in both variants and whatever the operands' storage; an
// accumulating product adds the sum to C widened, and narrows the total as it stores it.
// A_VEC and B_VEC say how A and B are fetched (MatMulKernel.VectorLoads checks the alignment
// each needs): 0 one element at a time, 1 vec4 along k, 2 vec4 along m (A) or n (B).
//
// BK = 0, streamed (CPU devices): each invocation reads its operands straight from memory and owns
// TM consecutive rows and TN consecutive columns. lavapipe executes a load whose address differs
// between invocations as a loop over the SIMD lanes, costing the same for one float as for four,
// so operands contiguous and 4-aligned along k, m or n are fetched as vec4. Its shared memory is
// ordinary memory behind emulated barriers: staging would cost more than it saves.
//
// BK > 0, staged (GPUs), the SIMT SGEMM of CUTLASS and of "how to optimize a CUDA SGEMM": the
// workgroup copies BK-deep slices of its A and B tiles to shared memory, so each global element
// is read once per workgroup instead of once per invocation, and each invocation accumulates its
// TM x TN outputs as outer products of TM values of A and TN of B per k, 2·TM·TN flops for every
// TM + TN floats read from shared memory.
// - Shared memory holds the slices k-major, A as [BK][BM] and B as [BK][BN], in vec4 words.
//   Invocation (tx, ty) owns rows ty*4 + i + r*LY*4 and columns tx*4 + j + s*LX*4 (i, j < 4), so
//   it reads its TM (TN) values per k as TM/4 (TN/4) vec4s, neighbouring invocations taking
//   neighbouring words: 128-bit shared loads without bank conflicts.
// - The slices are double-buffered: the next slice's global loads are issued into registers
//   before the FMAs on the current one and stored to the other buffer after them, so their
//   latency hides behind the arithmetic and each slice needs one barrier.
// - The fill is coalesced along whichever index of an operand is contiguous: vec4 along k for
//   row-major activations and [n][k] weights (stored transposed, four scalar writes), vec4 along
//   m or n for the other layouts (stored as is), single floats in the same patterns otherwise.
//   The transposed writes of one warp span 128/BK rows for each of BK/4 k quads, which unpadded
//   rows would put on the same banks; rather than padding the rows (the default tiles fill the
//   16 KiB every device has exactly), the vec4 words of k-row k are XOR-swizzled by a multiple
//   of k/4 that sends each k quad of a warp to its own banks. The swizzle permutes words within
//   aligned groups of 8, which the vec4 reads take whole, so they stay conflict-free.
// - Tiles inside the matrices, and slices inside K, load without bounds checks; only the edge
//   tiles test each element and zero-fill what lies outside (uniform branches per workgroup).
// - Every loop that indexes the per-invocation arrays (accumulators, operands, fetched slots) is
//   unrolled, and none breaks early, so that they stay in registers: an array indexed by a
//   rolled loop lives in local memory. (The previous staged kernel, whose loops carried no such
//   hint and broke early, ran 11x slower on an H100 with 64 accumulators than with 32.)
#extension GL_EXT_control_flow_attributes : require

layout(local_size_y_id = 1) in;
layout(constant_id = 2) const uint TM = 4;
layout(constant_id = 3) const uint TN = 4;
layout(constant_id = 4) const uint BK = 0;
layout(constant_id = 5) const uint A_VEC = 0;
layout(constant_id = 6) const uint B_VEC = 0;

const uint LX = gl_WorkGroupSize.x;
const uint LY = gl_WorkGroupSize.y;
const uint BM = LY * TM;
const uint BN = LX * TN;

// Staged variant only (TM, TN and BK multiples of 4).
const uint NT = LX * LY;
const uint BM4 = BM / 4;
const uint BN4 = BN / 4;
const uint KQ = BK / 4;
// vec4 slots of a slice each invocation fetches; WHOLE: they divide evenly, no invocation has fewer.
const uint A_SLOTS = BK > 0 ? (BM * KQ + NT - 1) / NT : 1;
const uint B_SLOTS = BK > 0 ? (BN * KQ + NT - 1) / NT : 1;
const bool A_WHOLE = BM * KQ % NT == 0;
const bool B_WHOLE = BN * KQ % NT == 0;
// The swizzle: 32/BK quads of rows per warp and k quad (of 32 invocations on 32 banks), within
// the largest aligned group of at most 8 words that divides a row.
const uint BK1 = BK > 0 ? BK : 1;
const uint SWZ_STEP = BK1 >= 32 ? 1 : 32 / BK1;
const uint A_LOW = BM4 & (0u - BM4);
const uint B_LOW = BN4 & (0u - BN4);
const uint A_SWZ = A_LOW >= 8 ? 7 : A_LOW > 0 ? A_LOW - 1 : 0;
const uint B_SWZ = B_LOW >= 8 ? 7 : B_LOW > 0 ? B_LOW - 1 : 0;
shared vec4 sa[BK > 0 ? 2 * BK * BM4 : 1];
shared vec4 sb[BK > 0 ? 2 * BK * BN4 : 1];

#include "matmul_push.glsl"
#define EPILOGUE_ID 10
#include "matmul_epilogue.glsl"

// Stores the sums of C's elements 4i .. 4i+3 as storeC stores one, in one vector access each of
// C and D where they are read.
void storeC4(uint i, vec4 sum) {
    precise vec4 v = pc.alpha * sum;
    if (EPILOGUE == EPILOGUE_GATE) {
        if (pc.keepsC != 0u) writeC4(i, v);
        vec4 h;
        [[unroll]] for (uint q = 0; q < 4; q++) h[q] = gated(i * 4 + q, v[q]);
        writeH4(i, h);
        return;
    }
    if (pc.accumulate != 0u) v += readC4(i);
    else if (EPILOGUE == EPILOGUE_RESIDUAL) {
        [[unroll]] for (uint q = 0; q < 4; q++) v[q] = dropped(i * 4 + q, v[q]);
        v = readD4(i) + v;
    } else if (EPILOGUE == EPILOGUE_RELU)
        [[unroll]] for (uint q = 0; q < 4; q++) v[q] = dropped(i * 4 + q, relu(asStored(v[q])));
    writeC4(i, v);
}

void streamed(uint aBase, uint bBase, uint cBase, uint tileM, uint tileN) {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    float acc[TM * TN];
    for (uint i = 0; i < TM * TN; i++) acc[i] = 0.0;
    // Rows and columns past the edge are clamped to the last valid one (the last whole
    // group of four for vec4 fetches along m or n) rather than branched around: the loop
    // stays branch-free and their results are never stored.
    const uint row0 = tileM + ty * TM;
    const uint col0 = tileN + tx * TN;
    uint aRow[TM];
    for (uint i = 0; i < TM; i++) aRow[i] = aBase + min(row0 + i, pc.M - 1) * pc.aStrideM;
    uint bCol[TN];
    for (uint j = 0; j < TN; j++) bCol[j] = bBase + min(col0 + j, pc.N - 1) * pc.bStrideN;
    uint k = 0;
    for (; k + 4 <= pc.K; k += 4) {
        float fa[TM * 4];
        if (A_VEC == 1) {
            for (uint i = 0; i < TM; i++) {
                const vec4 v = loadA4((aRow[i] + k) >> 2);
                fa[i * 4] = v.x; fa[i * 4 + 1] = v.y; fa[i * 4 + 2] = v.z; fa[i * 4 + 3] = v.w;
            }
        } else if (A_VEC == 2) {
            for (uint i = 0; i < TM; i += 4) {
                const uint g = aBase + min(row0 + i, pc.M - 4);
                for (uint kk = 0; kk < 4; kk++) {
                    const vec4 v = loadA4((g + (k + kk) * pc.aStrideK) >> 2);
                    fa[i * 4 + kk] = v.x; fa[(i + 1) * 4 + kk] = v.y; fa[(i + 2) * 4 + kk] = v.z; fa[(i + 3) * 4 + kk] = v.w;
                }
            }
        } else {
            for (uint i = 0; i < TM; i++)
                for (uint kk = 0; kk < 4; kk++) fa[i * 4 + kk] = loadA(aRow[i] + (k + kk) * pc.aStrideK);
        }
        float fb[4 * TN];
        if (B_VEC == 1) {
            for (uint j = 0; j < TN; j++) {
                const vec4 v = loadB4((bCol[j] + k) >> 2);
                fb[j] = v.x; fb[TN + j] = v.y; fb[2 * TN + j] = v.z; fb[3 * TN + j] = v.w;
            }
        } else if (B_VEC == 2) {
            for (uint j = 0; j < TN; j += 4) {
                const uint g = bBase + min(col0 + j, pc.N - 4);
                for (uint kk = 0; kk < 4; kk++) {
                    const vec4 v = loadB4((g + (k + kk) * pc.bStrideK) >> 2);
                    fb[kk * TN + j] = v.x; fb[kk * TN + j + 1] = v.y; fb[kk * TN + j + 2] = v.z; fb[kk * TN + j + 3] = v.w;
                }
            }
        } else {
            for (uint kk = 0; kk < 4; kk++)
                for (uint j = 0; j < TN; j++) fb[kk * TN + j] = loadB(bCol[j] + (k + kk) * pc.bStrideK);
        }
        for (uint kk = 0; kk < 4; kk++)
            for (uint j = 0; j < TN; j++)
                for (uint i = 0; i < TM; i++) acc[i * TN + j] = fma(fa[i * 4 + kk], fb[kk * TN + j], acc[i * TN + j]);
    }
    for (; k < pc.K; k++) {
        float av[TM];
        for (uint i = 0; i < TM; i++) av[i] = loadA(aRow[i] + k * pc.aStrideK);
        for (uint j = 0; j < TN; j++) {
            const float bv = loadB(bCol[j] + k * pc.bStrideK);
            for (uint i = 0; i < TM; i++) acc[i * TN + j] = fma(av[i], bv, acc[i * TN + j]);
        }
    }

    // Unrolled, with the edge tested per element rather than by breaking out: a rolled loop
    // indexes acc, which then lives in memory for the whole product, not in registers. Left to
    // the compiler, lavapipe rolled it once the epilogue's code made its body large, and the
    // step's products ran 3x slower.
    [[unroll]] for (uint i = 0; i < TM; i++) {
        const uint m = tileM + ty * TM + i;
        [[unroll]] for (uint j = 0; j < TN; j++) {
            const uint n = tileN + tx * TN + j;
            if (m < pc.M && n < pc.N) storeC(cBase + m * pc.cStrideM + n, pc.alpha, acc[i * TN + j]);
        }
    }
}

// Whether an operand's slots run along k: the vec4 form chosen, or for single floats whichever
// index is contiguous, so that neighbouring invocations still read neighbouring addresses.
bool aAlongK() { return A_VEC == 1 || (A_VEC == 0 && pc.aStrideK == 1); }
bool bAlongK() { return B_VEC == 1 || (B_VEC == 0 && pc.bStrideK == 1); }

// Slot e of a BK-deep slice of `rows4`*4 rows (m for A, n for B): its first element as (row, k),
// the four running along k, or along the rows.
uvec2 slot(uint e, bool alongK, uint rows4) {
    return alongK ? uvec2(e / KQ, e % KQ * 4) : uvec2(e % rows4 * 4, e / rows4);
}

// The vec4 word holding rows 4w .. 4w+3 of k-row k in buffer buf of a [2][BK][rows4] array.
uint word(uint buf, uint k, uint w, uint rows4, uint swizzleMask) {
    return (buf * BK + k) * rows4 + (w ^ ((k >> 2) * SWZ_STEP & swizzleMask));
}

// Slot e of A's slice at k0, zero outside the matrix; `inside`: the whole slice lies within it.
vec4 fetchA(uint base, uint e, uint tileM, uint k0, bool inside) {
    const bool alongK = aAlongK();
    const uvec2 p = slot(e, alongK, BM4);
    const uint m = tileM + p.x, k = k0 + p.y;
    const uint dm = alongK ? 0 : 1, dk = 1 - dm;
    if (A_VEC != 0 && (inside || (m + 3 * dm < pc.M && k + 3 * dk < pc.K)))
        return loadA4((base + m * pc.aStrideM + k * pc.aStrideK) >> 2);
    vec4 v = vec4(0.0);
    [[unroll]] for (uint q = 0; q < 4; q++)
        if (inside || (m + q * dm < pc.M && k + q * dk < pc.K))
            v[q] = loadA(base + (m + q * dm) * pc.aStrideM + (k + q * dk) * pc.aStrideK);
    return v;
}

vec4 fetchB(uint base, uint e, uint tileN, uint k0, bool inside) {
    const bool alongK = bAlongK();
    const uvec2 p = slot(e, alongK, BN4);
    const uint n = tileN + p.x, k = k0 + p.y;
    const uint dn = alongK ? 0 : 1, dk = 1 - dn;
    if (B_VEC != 0 && (inside || (n + 3 * dn < pc.N && k + 3 * dk < pc.K)))
        return loadB4((base + k * pc.bStrideK + n * pc.bStrideN) >> 2);
    vec4 v = vec4(0.0);
    [[unroll]] for (uint q = 0; q < 4; q++)
        if (inside || (n + q * dn < pc.N && k + q * dk < pc.K))
            v[q] = loadB(base + (k + q * dk) * pc.bStrideK + (n + q * dn) * pc.bStrideN);
    return v;
}

void storeA(uint buf, uint e, vec4 v) {
    const uvec2 p = slot(e, aAlongK(), BM4);
    if (aAlongK())
        [[unroll]] for (uint q = 0; q < 4; q++) sa[word(buf, p.y + q, p.x >> 2, BM4, A_SWZ)][p.x & 3] = v[q];
    else
        sa[word(buf, p.y, p.x >> 2, BM4, A_SWZ)] = v;
}

void storeB(uint buf, uint e, vec4 v) {
    const uvec2 p = slot(e, bAlongK(), BN4);
    if (bAlongK())
        [[unroll]] for (uint q = 0; q < 4; q++) sb[word(buf, p.y + q, p.x >> 2, BN4, B_SWZ)][p.x & 3] = v[q];
    else
        sb[word(buf, p.y, p.x >> 2, BN4, B_SWZ)] = v;
}

void staged(uint aBase, uint bBase, uint cBase, uint tileM, uint tileN) {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint tid = gl_LocalInvocationIndex;
    float acc[TM * TN];
    [[unroll]] for (uint i = 0; i < TM * TN; i++) acc[i] = 0.0;

    const bool insideM = tileM + BM <= pc.M;
    const bool insideN = tileN + BN <= pc.N;
    const uint slices = (pc.K + BK - 1) / BK;
    // Step s fetches slice s into registers, multiplies slice s - 1 out of shared memory, then
    // stores slice s into the other buffer. The one barrier per step orders both the stores
    // before the next step's reads and this step's reads before the stores two steps on.
    for (uint s = 0; s <= slices; s++) {
        const uint k0 = s * BK;
        const bool fill = s < slices;
        vec4 ra[A_SLOTS];
        vec4 rb[B_SLOTS];
        if (fill) {
            const bool insideK = k0 + BK <= pc.K;
            [[unroll]] for (uint i = 0; i < A_SLOTS; i++)
                if (A_WHOLE || tid + i * NT < BM * KQ) ra[i] = fetchA(aBase, tid + i * NT, tileM, k0, insideM && insideK);
            [[unroll]] for (uint i = 0; i < B_SLOTS; i++)
                if (B_WHOLE || tid + i * NT < BN * KQ) rb[i] = fetchB(bBase, tid + i * NT, tileN, k0, insideN && insideK);
        }
        if (s > 0) {
            const uint buf = (s - 1) & 1;
            [[unroll]] for (uint kk = 0; kk < BK; kk++) {
                vec4 fa[TM / 4];
                [[unroll]] for (uint r = 0; r < TM / 4; r++) fa[r] = sa[word(buf, kk, ty + r * LY, BM4, A_SWZ)];
                vec4 fb[TN / 4];
                [[unroll]] for (uint t = 0; t < TN / 4; t++) fb[t] = sb[word(buf, kk, tx + t * LX, BN4, B_SWZ)];
                [[unroll]] for (uint r = 0; r < TM / 4; r++)
                    [[unroll]] for (uint i = 0; i < 4; i++)
                        [[unroll]] for (uint t = 0; t < TN / 4; t++)
                            [[unroll]] for (uint j = 0; j < 4; j++) {
                                const uint at = (r * 4 + i) * TN + t * 4 + j;
                                acc[at] = fma(fa[r][i], fb[t][j], acc[at]);
                            }
            }
        }
        if (fill) {
            [[unroll]] for (uint i = 0; i < A_SLOTS; i++)
                if (A_WHOLE || tid + i * NT < BM * KQ) storeA(s & 1, tid + i * NT, ra[i]);
            [[unroll]] for (uint i = 0; i < B_SLOTS; i++)
                if (B_WHOLE || tid + i * NT < BN * KQ) storeB(s & 1, tid + i * NT, rb[i]);
        }
        barrier();
    }

    // Each invocation's columns come in aligned fours, stored whole where C's rows are 4-aligned.
    const bool cVec = cBase % 4 == 0 && (pc.M == 1 || pc.cStrideM % 4 == 0);
    [[unroll]] for (uint r = 0; r < TM / 4; r++)
        [[unroll]] for (uint i = 0; i < 4; i++) {
            const uint m = tileM + (ty + r * LY) * 4 + i;
            [[unroll]] for (uint t = 0; t < TN / 4; t++) {
                const uint n = tileN + (tx + t * LX) * 4;
                const uint at = cBase + m * pc.cStrideM + n;
                const uint row = (r * 4 + i) * TN + t * 4;
                const vec4 sum = vec4(acc[row], acc[row + 1], acc[row + 2], acc[row + 3]);
                if (m < pc.M && n < pc.N) {
                    if (cVec && n + 4 <= pc.N) storeC4(at >> 2, sum);
                    else
                        [[unroll]] for (uint j = 0; j < 4; j++)
                            if (n + j < pc.N) storeC(at + j, pc.alpha, sum[j]);
                }
            }
        }
}

void main() {
    const uint tileM = gl_WorkGroupID.y * BM;
    const uint tileN = gl_WorkGroupID.x * BN;
    // Batches beyond the device's z-dimension limit wrap round; z is uniform per workgroup, so
    // the staged variant's barriers stay in uniform control flow.
    for (uint z = gl_WorkGroupID.z; z < pc.batch1 * pc.batch2; z += gl_NumWorkGroups.z) {
        const uint z1 = z / pc.batch2;
        const uint z2 = z % pc.batch2;
        const uint aBase = pc.aOffset + z1 * pc.aStrideB1 + z2 * pc.aStrideB2;
        const uint bBase = pc.bOffset + z1 * pc.bStrideB1 + z2 * pc.bStrideB2;
        const uint cBase = pc.cOffset + z1 * pc.cStrideB1 + z2 * pc.cStrideB2;
        if (BK == 0) streamed(aBase, bBase, cBase, tileM, tileN);
        else staged(aBase, bBase, cBase, tileM, tileN);
    }
}
