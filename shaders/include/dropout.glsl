// dropout.comp's mask and scaling, for kernels that drop a tensor as they pass over it anyway
// (an activation's output, the gradient it reads) instead of leaving it to a pass of its own.
// keep(i) draws Philox with counter (i, stream) under the seed; the host computes threshold and
// scale once (DropoutKernel.KeepThreshold, KeepScale), so every kernel and DropoutReference
// compare the same integers and multiply by the same float.
#ifndef VKPROMPT_DROPOUT_GLSL
#define VKPROMPT_DROPOUT_GLSL
#include "philox.glsl"

bool dropoutKeeps(uint i, uint stream, uint seed, uint threshold) {
    return philox2x32_10(uvec2(i, stream), seed).x >= threshold;
}

// precise: v * scale is rounded on its own, as dropout.comp stores it, and never fused into an
// fma with what the caller does with it next, which would differ from a separate dropout pass.
float dropoutApply(float v, bool keep, float scale) {
    precise float dropped = keep ? v * scale : 0.0;
    return dropped;
}

#endif
