// The push constants of every matrix-product kernel (include/matmul.glsl, include/matmul_coopmat.glsl,
// matmul_coopmat_nv2.comp): MatMulSpec's fields in its order, then the epilogue's (MatMulEpilogue,
// include/matmul_epilogue.glsl), 104 bytes, which MatMulKernel.Push writes field for field; one
// block for all of them, so that a field added or moved here and there cannot be missed in one
// kernel (MatMulPushTests compares each module's block with Push). Which epilogue a product has is
// not here but a specialization constant (EPILOGUE, include/matmul_epilogue.glsl).
#ifndef VKPROMPT_MATMUL_PUSH_GLSL
#define VKPROMPT_MATMUL_PUSH_GLSL

layout(push_constant) uniform Push {
    uint M, N, K, batch1, batch2;
    uint aOffset, aStrideB1, aStrideB2, aStrideM, aStrideK;
    uint bOffset, bStrideB1, bStrideB2, bStrideK, bStrideN;
    uint cOffset, cStrideB1, cStrideB2, cStrideM;
    float alpha;
    uint accumulate;
    // The epilogue's dropout: dropThreshold 0 is none, else the keep threshold and scale of
    // DropoutKernel for the mask of stream dropStream.
    uint dropThreshold;
    float dropScale;
    uint dropStream;
    // The gate's act (GateActivation, include/activations.glsl's ACTIVATION_*) and whether C is stored.
    uint gateActivation, keepsC;
} pc;

#endif
