#version 450
#extension GL_GOOGLE_include_directive : require

// The fused attention for fp32 activations, on devices with or without 16-bit storage; the kernel
// is include/fused_attention_forward.glsl.
#include "fused_attention_forward.glsl"
