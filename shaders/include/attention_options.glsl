// The bits of the attention kernels' `flags` push constant (AttentionOptions in
// src/Runtime/Kernels/AttentionOptions.cs, the same values): the optional parts applied. An absent
// input is off here, and its binding then holds a stand-in the shaders never read.
#ifndef VKPROMPT_ATTENTION_OPTIONS_GLSL
#define VKPROMPT_ATTENTION_OPTIONS_GLSL

const uint HAS_BIAS = 1u, HAS_MASK = 2u, CAUSAL = 4u, DROPOUT = 8u;

#endif
