// How every product kernel but the workgroup-scope one (include/matmul.glsl,
// include/matmul_coopmat.glsl) finishes an element of C as it stores it, one function for every
// store path: the sum scaled by alpha (times an int8 B's row scale), then either added to C
// (accumulate) or, with the residual epilogue (MatMulEpilogue), dropped as dropout.comp would drop
// it and added to D, the addend read at C's own address: C = D + dropout(alpha·A·B), what the
// product into a branch of its own followed by add.comp's dropping add computed, bit for bit, and
// without writing and reading the branch. The mask is that of C's element index in its buffer
// (the flat index add.comp and dropout.comp draw for), under the seed at binding
// EPILOGUE_BINDING + 1. D is stored as C is (MatMulKernel checks).
// The including shader declares, before this file: EPILOGUE_BINDING, the push block, and
// float readC(uint i), readD(uint i), void writeC(uint i, float v) for C and D's element i,
// widened as read and narrowed as written where they are 16-bit.
#ifndef VKPROMPT_MATMUL_EPILOGUE_GLSL
#define VKPROMPT_MATMUL_EPILOGUE_GLSL
#include "dropout.glsl"

layout(std430, binding = EPILOGUE_BINDING + 1) readonly buffer BufSeed { uint seed; };

// The scaled sum v of element `at` as the branch's dropout leaves it (v itself without dropout).
float dropped(uint at, float v) {
    return pc.dropThreshold != 0u ? dropoutApply(v, dropoutKeeps(at, pc.dropStream, seed, pc.dropThreshold), pc.dropScale) : v;
}

// What C's element `at` holds once the product's sum of it is done. precise: the scaled sum is
// rounded on its own, as the branch stored it, never fused into an fma with what is added to it.
float finished(uint at, float scale, float sum) {
    precise float v = scale * sum;
    if (pc.accumulate != 0u) return v + readC(at);
    if (pc.epilogue != 0u) return readD(at) + dropped(at, v);
    return v;
}

void storeC(uint at, float scale, float sum) { writeC(at, finished(at, scale, sum)); }

#endif
