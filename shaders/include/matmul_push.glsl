// The push constants of every matrix-product kernel (include/matmul.glsl, include/matmul_coopmat.glsl,
// matmul_coopmat_nv2.comp): MatMulSpec's fields in its order, then the epilogue's (MatMulEpilogue,
// include/matmul_epilogue.glsl), 108 bytes, which MatMulKernel.Push writes field for field; one block for all of them, so that a field added or moved here and
// there cannot be missed in one kernel (MatMulPushTests compares each module's block with Push).
#ifndef VKPROMPT_MATMUL_PUSH_GLSL
#define VKPROMPT_MATMUL_PUSH_GLSL

layout(push_constant) uniform Push {
    uint M, N, K, batch1, batch2;
    uint aOffset, aStrideB1, aStrideB2, aStrideM, aStrideK;
    uint bOffset, bStrideB1, bStrideB2, bStrideK, bStrideN;
    uint cOffset, cStrideB1, cStrideB2, cStrideM;
    float alpha;
    uint accumulate;
    // 1: C = D + dropout(alpha·A·B), D at C's addresses; 2: the gate, H = dropout(act(D) * C) with
    // C = alpha·A·B, D the gate at C's addresses (C stored only where keepsC). dropThreshold 0 is
    // no dropout, else the keep threshold and scale of DropoutKernel for the mask of stream dropStream.
    uint epilogue, dropThreshold;
    float dropScale;
    uint dropStream;
    // The gate's act (GateActivation, include/activations.glsl's ACTIVATION_*) and whether C is stored.
    uint gateActivation, keepsC;
} pc;

#endif
