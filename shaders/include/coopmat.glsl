// The 16x16 matrix operations of include/matmul_coopmat.glsl (and include/matrix_peak.glsl and
// include/fused_attention_coopmat*.glsl), which they name through these macros and functions so
// that one kernel builds three ways:
// - on the matrix units, with GL_KHR_cooperative_matrix (COOPMAT_KHR, matmul_coopmat_khr.comp),
//   whose A, B and accumulator fragments are distinct types, or GL_NV_cooperative_matrix
//   (matmul_coopmat.comp);
// - emulated (COOPMAT_EMULATED, matmul_coopmat_emulated.comp) with ordinary fp32 arithmetic, so
//   that every device with fp16 arithmetic and 16-bit storage, lavapipe in CI among them, runs
//   the kernel's staging, edges and stores: all of it but the matrix instructions themselves.
// They work on the kernel's own names: its output buffer c (none where COOPMAT_NO_C is defined),
// the product's addend (the residual epilogue's D, where COOPMAT_ADDEND is defined)
// and its staged slices sa (A) and sb (B), arrays of uvec2, each four packed halves, whose
// offsets and strides count those vectors, declared before this file is included. Accumulators
// stored to shared memory go to sa too, two fp32 to a uvec2.
//
// The emulation follows the extension's definitions: an accumulator is a 16x16 fp32 matrix
// spread over the SUBGROUP invocations of a (here merely logical) subgroup, element e = 16·row +
// column held by invocation e % SUBGROUP; a load or store with row-major layout takes element
// (row, column) at at + row·stride + column, with column-major at at + column·stride + row, in
// the array's elements, and an array of vectors holds their components one after another; a
// product sums exact fp16·fp16 products in fp32 (bf16·bf16 where COOPMAT_BF16: see below). An emulated operand is a view of its slice in
// shared memory rather than a copy, read when it is multiplied: the kernel multiplies operands
// before the barrier after which their slice is refilled, so the two read the same values.
//
// COOPMAT_BF16 (the KHR build with GL_EXT_bfloat16, VK_KHR_shader_bfloat16, and its emulation)
// makes the A and B fragments bf16 rather than fp16: the staged slices then hold packed bf16
// values, which the emulation widens by a shift. A bf16·bf16 product (8 significant bits each)
// is exact in fp32 too, so the emulation sums exactly what the units' 16x16x16 bf16 shape sums.
#if defined(COOPMAT_KHR)

#ifdef COOPMAT_BF16
#define CM_OPERAND bfloat16_t
#else
#define CM_OPERAND float16_t
#endif
// The units' own shape, CM_M x CM_N x CM_K (DevicePlan.MatrixUnitsFragment: 16x16x16 where the
// device lists it, else a listed shape with sides of 8 or 16). Each 16x16 matrix here is composed
// of CM_PM x CM_PN (A: CM_PM x CM_PK, B: CM_PK x CM_PN) of the units' fragments, row-major, so
// that devices and drivers listing only smaller shapes (Mesa 26.1's lavapipe lists 8x8x8 only) run
// the same kernels. Why specialization constants rather than a build per shape: every device runs
// one module, so lavapipe's 8x8x8 executes the very SPIR-V a 16x16x16 device does; where the
// shape is 16x16x16 a composite is one fragment and its loops fold away. The arrays have the
// largest count (GLSL cannot copy arrays sized by specialization constants), of which a shape
// uses the first CM_PM·CM_PN etc.
layout(constant_id = 20) const uint CM_M = 16;
layout(constant_id = 21) const uint CM_N = 16;
layout(constant_id = 22) const uint CM_K = 16;
const uint CM_PM = 16 / CM_M, CM_PN = 16 / CM_N, CM_PK = 16 / CM_K;
#define CM_UNIT_ACC coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>
#define CM_ACC CM_UNIT_ACC[4]
#define CM_FRAG_A coopmat<CM_OPERAND, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA>[4]
#define CM_FRAG_B coopmat<CM_OPERAND, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB>[4]

CM_ACC cmZero() {
    CM_ACC m;
    [[unroll]] for (uint p = 0; p < CM_PM * CM_PN; p++) m[p] = CM_UNIT_ACC(0.0);
    return m;
}

// Loads and stores take offsets and strides in elements of the array they address (halves
// packed four to a uvec2 in sa and sb, two floats to a uvec2 where sa stages an accumulator):
// a part's rows and columns are offset by whole fragments, which the strides' units divide.
// The layout operand must be a constant, hence a branch for each (folded where colMajor is).
#define CM_PART_AT(at, stride, colMajor, row, col, perElement) \
    ((at) + ((colMajor) ? (col) * (stride) + (row) / (perElement) : (row) * (stride) + (col) / (perElement)))
#define CM_LOAD(f, array, at, stride, colMajor, row, col, perElement) \
    if (colMajor) coopMatLoad(f, array, CM_PART_AT(at, stride, true, row, col, perElement), stride, gl_CooperativeMatrixLayoutColumnMajor); \
    else coopMatLoad(f, array, CM_PART_AT(at, stride, false, row, col, perElement), stride, gl_CooperativeMatrixLayoutRowMajor)

void cmLoadA(out CM_FRAG_A f, uint at, uint stride, bool colMajor) {
    [[unroll]] for (uint i = 0; i < CM_PM; i++)
        [[unroll]] for (uint k = 0; k < CM_PK; k++) { CM_LOAD(f[i * CM_PK + k], sa, at, stride, colMajor, i * CM_M, k * CM_K, 4); }
}

void cmLoadB(out CM_FRAG_B f, uint at, uint stride, bool colMajor) {
    [[unroll]] for (uint k = 0; k < CM_PK; k++)
        [[unroll]] for (uint j = 0; j < CM_PN; j++) { CM_LOAD(f[k * CM_PN + j], sb, at, stride, colMajor, k * CM_K, j * CM_N, 4); }
}

CM_ACC cmMulAdd(CM_FRAG_A a, CM_FRAG_B b, CM_ACC m) {
    [[unroll]] for (uint i = 0; i < CM_PM; i++)
        [[unroll]] for (uint j = 0; j < CM_PN; j++)
            [[unroll]] for (uint k = 0; k < CM_PK; k++)
                m[i * CM_PN + j] = coopMatMulAdd(a[i * CM_PK + k], b[k * CM_PN + j], m[i * CM_PN + j]);
    return m;
}

CM_ACC cmScale(CM_ACC m, float s) {
    [[unroll]] for (uint p = 0; p < CM_PM * CM_PN; p++) m[p] = m[p] * s;
    return m;
}

// An accumulator's parts each loaded or stored (op: CM_LOAD or CM_STORE) at their places in array.
#define CM_STORE(m, array, at, stride, colMajor, row, col, perElement) \
    if (colMajor) coopMatStore(m, array, CM_PART_AT(at, stride, true, row, col, perElement), stride, gl_CooperativeMatrixLayoutColumnMajor); \
    else coopMatStore(m, array, CM_PART_AT(at, stride, false, row, col, perElement), stride, gl_CooperativeMatrixLayoutRowMajor)
#define CM_ACC_PARTS(op, m, array, at, stride, colMajor, perElement) \
    [[unroll]] for (uint i = 0; i < CM_PM; i++) \
        [[unroll]] for (uint j = 0; j < CM_PN; j++) { op(m[i * CM_PN + j], array, at, stride, colMajor, i * CM_M, j * CM_N, perElement); }

#ifndef COOPMAT_NO_C
void cmLoadC(out CM_ACC m, uint at, uint stride) { CM_ACC_PARTS(CM_LOAD, m, c, at, stride, false, 1); }
void cmStoreC(CM_ACC m, uint at, uint stride) { CM_ACC_PARTS(CM_STORE, m, c, at, stride, false, 1); }
#endif

#ifdef COOPMAT_ADDEND
void cmLoadD(out CM_ACC m, uint at, uint stride) { CM_ACC_PARTS(CM_LOAD, m, addend, at, stride, false, 1); }
#endif

void cmStoreShared(CM_ACC m, uint at, uint stride, bool colMajor) { CM_ACC_PARTS(CM_STORE, m, sa, at, stride, colMajor, 2); }

#elif !defined(COOPMAT_EMULATED)

#define CM_ACC fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define CM_FRAG_A fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define CM_FRAG_B CM_FRAG_A
#define cmZero() CM_ACC(0.0)
#define cmLoadC(m, at, stride) coopMatLoadNV(m, c, at, stride, false)
#define cmLoadD(m, at, stride) coopMatLoadNV(m, addend, at, stride, false)
#define cmStoreC(m, at, stride) coopMatStoreNV(m, c, at, stride, false)
#define cmStoreShared(m, at, stride, colMajor) coopMatStoreNV(m, sa, at, stride, colMajor)
#define cmLoadA(f, at, stride, colMajor) coopMatLoadNV(f, sa, at, stride, colMajor)
#define cmLoadB(f, at, stride, colMajor) coopMatLoadNV(f, sb, at, stride, colMajor)
#define cmMulAdd(a, b, m) coopMatMulAddNV(a, b, m)
#define cmScale(m, s) ((m) * (s))

#else

// An invocation holds CM_SLOTS elements of each accumulator, four to a vec4. Where SUBGROUP is a
// specialization constant (the fused attention's: DevicePlan.FusedAttentionSubgroupSize), GLSL
// cannot copy arrays sized by it, so the accumulator holds room for the narrowest subgroup the
// build takes (CM_NARROWEST_SUBGROUP, 32 unless it says), of which CM_SLOTS are used. That room
// is paid for in compile time: lavapipe took twice as long to compile the emulated product with
// room for subgroups of 8, which is why the product keeps its 32 and the fused attention's
// narrow widths have builds of their own (fused_attention_coopmat*_emulated_narrow.comp). The loops over
// slots go a vec4 at a time, its components unrolled, so that an indexed access picks among vec4s
// (Mesa turns each indexed access of a local array into a select over its elements).
#ifndef CM_NARROWEST_SUBGROUP
#define CM_NARROWEST_SUBGROUP 32
#endif
// Subgroups of 8 to 64 (DevicePlan checks): CM_SLOTS is 32 down to 4, whole vec4s.
const uint CM_SLOTS = 256 / SUBGROUP;
struct CM_ACC { vec4 q[256 / CM_NARROWEST_SUBGROUP / 4]; };
struct CM_FRAG_A { uint at; uint stride; bool colMajor; };
#define CM_FRAG_B CM_FRAG_A

// Row and column of the element this invocation holds in a slot.
uvec2 cmElement(uint slot) {
    const uint e = slot * SUBGROUP + gl_LocalInvocationIndex % SUBGROUP;
    return uvec2(e / 16, e % 16);
}

uint cmAt(uint at, uint stride, bool colMajor, uint row, uint col) {
    return colMajor ? at + col * stride + row : at + row * stride + col;
}

// For each slot s = 4·q + i this invocation holds: q rolled, i unrolled.
#define CM_EACH_SLOT(q, i) \
    [[dont_unroll]] for (uint q = 0; q < CM_SLOTS / 4; q++) [[unroll]] for (uint i = 0; i < 4; i++)

CM_ACC cmZero() {
    CM_ACC m;
    [[dont_unroll]] for (uint q = 0; q < CM_SLOTS / 4; q++) m.q[q] = vec4(0.0);
    return m;
}

// Kernels that never touch C through the matrix operations (the fused attention) have no c.
#ifndef COOPMAT_NO_C
void cmLoadC(out CM_ACC m, uint at, uint stride) {
    CM_EACH_SLOT(q, i) {
        const uvec2 rc = cmElement(4 * q + i);
        m.q[q][i] = c[cmAt(at, stride, false, rc.x, rc.y)];
    }
}

void cmStoreC(CM_ACC m, uint at, uint stride) {
    CM_EACH_SLOT(q, i) {
        const uvec2 rc = cmElement(4 * q + i);
        c[cmAt(at, stride, false, rc.x, rc.y)] = m.q[q][i];
    }
}
#endif

#ifdef COOPMAT_ADDEND
void cmLoadD(out CM_ACC m, uint at, uint stride) {
    CM_EACH_SLOT(q, i) {
        const uvec2 rc = cmElement(4 * q + i);
        m.q[q][i] = addend[cmAt(at, stride, false, rc.x, rc.y)];
    }
}
#endif

void cmStoreShared(CM_ACC m, uint at, uint stride, bool colMajor) {
    CM_EACH_SLOT(q, i) {
        const uvec2 rc = cmElement(4 * q + i);
        const uint f = cmAt(2 * at, 2 * stride, colMajor, rc.x, rc.y);
        sa[f / 2][f % 2] = floatBitsToUint(m.q[q][i]);
    }
}

// The views count halves.
void cmLoadA(out CM_FRAG_A f, uint at, uint stride, bool colMajor) { f = CM_FRAG_A(4 * at, 4 * stride, colMajor); }
void cmLoadB(out CM_FRAG_B f, uint at, uint stride, bool colMajor) { f = CM_FRAG_B(4 * at, 4 * stride, colMajor); }

// Operand i of four packed in a uvec2, as fp32 (exact): an fp16 half, or with COOPMAT_BF16 a bf16.
#ifdef COOPMAT_BF16
float cmOperand(uvec2 v, uint i) { return uintBitsToFloat(i % 2 == 0 ? v[i / 2] << 16 : v[i / 2] & 0xffff0000u); }
#else
float cmOperand(uvec2 v, uint i) { return float(unpackFloat2x16(v[i / 2])[i % 2]); }
#endif

// Element i (uvec2s) of the shared copy of A or, with ofB, of B.
uvec2 cmShared(bool ofB, uint i) { return ofB ? sb[i] : sa[i]; }

// The 16 operands along k of line `line` of a fragment: a row of A or, with ofB, a column of B.
// Four uvec2 loads where they lie contiguous (A row-major, B column-major; at and stride count
// halves in multiples of 4, cmLoadA/B), else one at a time: A's element (line, k) or B's (k, line)
// is at + line·stride + k where contiguous, at + k·stride + line where not (cmAt).
void cmRun(bool ofB, CM_FRAG_A f, uint line, out float run[16]) {
    if (ofB == f.colMajor) {
        const uint first = (f.at + line * f.stride) / 4;
        [[unroll]] for (uint g = 0; g < 4; g++) {
            const uvec2 v = cmShared(ofB, first + g);
            [[unroll]] for (uint e = 0; e < 4; e++) run[4 * g + e] = cmOperand(v, e);
        }
    } else {
        [[unroll]] for (uint k = 0; k < 16; k++) {
            const uint at = f.at + k * f.stride + line;
            run[k] = cmOperand(cmShared(ofB, at / 4), at % 4);
        }
    }
}

// lavapipe (Mesa 22) silently ends the loops of an invocation once they have run 65535
// iterations between them (gallivm's loop limiter): with every loop here rolled, a product stopped
// adding after K = 1744. So the 16 k of a product are unrolled and its slots taken four at a time,
// two iterations a product at the product's subgroups of 32, which keeps a t5 step's products (K
// up to the vocabulary's 32128) inside the limit (the fused attention's, at most 8 a product at
// 8 wide, sum over a block or d_kv); unrolled whole, a pipeline took lavapipe minutes to compile.
// Operands are read a run along k at a time (cmRun), and B's once a product: slot
// 4q + i holds column (i·SUBGROUP + lane) % 16 whatever q, one column for all where SUBGROUP is a
// multiple of 16 and two alternating at 8. Read an element at a time, each product gathered every
// operand of each slot from shared memory, one SIMD lane after another on lavapipe: two loads per
// multiply-add, which made the emulated units the slowest backend the tests run. The sums are
// the same, in the same order.
CM_ACC cmMulAdd(CM_FRAG_A a, CM_FRAG_B b, CM_ACC m) {
    float b0[16], b1[16];
    cmRun(true, b, cmElement(0).y, b0);
    if (SUBGROUP % 16 == 0) b1 = b0;
    else cmRun(true, b, cmElement(1).y, b1);
    CM_EACH_SLOT(q, i) {
        const uvec2 rc = cmElement(4 * q + i);
        float run[16];
        cmRun(false, a, rc.x, run);
        float sum = m.q[q][i];
        [[unroll]] for (uint k = 0; k < 16; k++) sum += run[k] * (i % 2 == 0 ? b0[k] : b1[k]);
        m.q[q][i] = sum;
    }
    return m;
}

CM_ACC cmScale(CM_ACC m, float scale) {
    [[dont_unroll]] for (uint q = 0; q < CM_SLOTS / 4; q++) m.q[q] *= scale;
    return m;
}

#endif

// The subgroup of the workgroup an invocation multiplies its matrices with (the kernels give each
// its tiles by this index), and the invocation's place in it. On the units, the real subgroup's:
// Vulkan does not relate gl_SubgroupID to gl_LocalInvocationIndex, and a subgroup-scope matrix
// lives in one real subgroup, whose size is SUBGROUP where the pipeline pins it
// (DevicePlan.MatrixUnitsSubgroupPinned). The emulation's subgroups are its own grouping of
// consecutive invocations.
#ifdef COOPMAT_EMULATED
uint cmSubgroup() { return gl_LocalInvocationIndex / SUBGROUP; }
uint cmLane() { return gl_LocalInvocationIndex % SUBGROUP; }
#else
#extension GL_KHR_shader_subgroup_basic : require
uint cmSubgroup() { return gl_SubgroupID; }
uint cmLane() { return gl_SubgroupInvocationID; }
#endif

// An accumulator to sa as a 16x16 fp32 tile of its own, rows of 16 floats (8 uvec2s).
#define cmStoreStaging(m, at) cmStoreShared(m, at, 8, false)
