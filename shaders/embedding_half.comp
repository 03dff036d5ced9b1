#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
#include "common.glsl"

// Token embedding from a table stored as fp16 or bf16 (include/half.glsl); the output and the
// prompts stay fp32. include/embedding.glsl holds the algorithm. A file apart from
// embedding.comp because a module declaring a 16-bit buffer requires 16-bit storage.
layout(constant_id = 1) const uint WEIGHT_BF16 = 0;
#include "half.glsl"

layout(std430, binding = 0) readonly buffer Table { uint16_t table[]; };

float loadTable(uint i, uint row) { return widen(uint(table[i])); }

#include "embedding.glsl"
