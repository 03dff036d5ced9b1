// How every product kernel but the workgroup-scope one (include/matmul.glsl,
// include/matmul_coopmat.glsl) finishes an element of C as it stores it, one function for every
// store path: the sum scaled by alpha (times an int8 B's row scale), then either added to C
// (accumulate) or, with the residual epilogue (MatMulEpilogue), dropped as dropout.comp would drop
// it and added to D, the addend read at C's own address: C = D + dropout(alpha·A·B), what the
// product into a branch of its own followed by add.comp's dropping add computed, bit for bit, and
// without writing and reading the branch. The mask is that of C's element index in its buffer
// (the flat index add.comp and dropout.comp draw for), under the seed at binding
// EPILOGUE_BINDING + 1. D is stored as C is (MatMulKernel checks).
// With the gate epilogue D is the gated feed-forward's gate a (wi_0's product) and the sum is b
// (wi_1's): the hidden H (at EPILOGUE_BINDING + 2, C's addresses, stored as C is) gets
// dropout(act(a) * b), a and b each read as stored, which is what the product into C followed by
// gated_activation.comp computed, bit for bit (the same function of include/activations.glsl, the
// same mask, drawn for the element's index in C as gated_activation.comp draws for its flat index),
// without the pass; C keeps b only where the backward reads it (pc.keepsC).
// With the relu epilogue C = dropout(relu(v)), v the scaled sum as C stores it: what the product
// into C followed by relu.comp over it computed, bit for bit (the same relu() and mask).
// Which of them a product has is the specialization constant EPILOGUE (constant_id EPILOGUE_ID),
// not a push constant: a product without one compiles as if this file held only the plain store,
// without the Philox mask's and the activation's code and registers behind a uniform branch.
// The including shader declares, before this file: EPILOGUE_BINDING, EPILOGUE_ID, the push block, and
// float readC(uint i), readD(uint i), void writeC(uint i, float v), writeH(uint i, float v) for
// C, D and H's element i, widened as read and narrowed as written where they are 16-bit, and
// float asStored(float v), v as C stores it (rounded to C's 16 bits, or v itself).
#ifndef VKPROMPT_MATMUL_EPILOGUE_GLSL
#define VKPROMPT_MATMUL_EPILOGUE_GLSL
#include "dropout.glsl"
#include "activations.glsl"

// MatMulEpilogue's codes: 0 none, 1 C = D + dropout(alpha·A·B), D at C's addresses; 2 the gate,
// H = dropout(act(D) * C) with C = alpha·A·B, D the gate at C's addresses (C stored only where
// keepsC); 3 C = dropout(relu(alpha·A·B)).
layout(constant_id = EPILOGUE_ID) const uint EPILOGUE = 0;
const uint EPILOGUE_RESIDUAL = 1u;
const uint EPILOGUE_GATE = 2u;
const uint EPILOGUE_RELU = 3u;

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
    if (EPILOGUE == EPILOGUE_RESIDUAL) return readD(at) + dropped(at, v);
    if (EPILOGUE == EPILOGUE_RELU) return dropped(at, relu(asStored(v)));
    return v;
}

// The gate epilogue's hidden element `at` of the product's element b (include/gated_activation.glsl's
// arithmetic: a and b as stored, fp32 between).
float gated(uint at, float b) {
    return dropped(at, gate_activation(pc.gateActivation, readD(at)) * asStored(b));
}

void storeC(uint at, float scale, float sum) {
    if (EPILOGUE == EPILOGUE_GATE) {
        precise float b = scale * sum;
        if (pc.keepsC != 0u) writeC(at, b);
        writeH(at, gated(at, b));
        return;
    }
    writeC(at, finished(at, scale, sum));
}

#endif
