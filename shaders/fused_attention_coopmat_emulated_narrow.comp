#version 450
#extension GL_GOOGLE_include_directive : require

// fused_attention_coopmat_emulated.comp for the emulation's subgroups of 8 and 16
// (DevicePlan.FusedAttentionSubgroupSize), whose accumulators hold room for them: room that, in
// every pipeline of the build for 32 and 64, would cost lavapipe's compiles (include/coopmat.glsl).
#define COOPMAT_EMULATED
#define CM_NARROWEST_SUBGROUP 8
#include "fused_attention_coopmat_forward.glsl"
