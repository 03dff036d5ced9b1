#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "int8.glsl"

// Token embedding from a table stored as int8 with one fp32 scale per row (include/int8.glsl);
// the output and the prompts stay fp32. include/embedding.glsl holds the algorithm.
layout(std430, binding = 0) readonly buffer Table { uint table[]; };
layout(std430, binding = 5) readonly buffer TableScale { float tableScale[]; };

float loadTable(uint i, uint row) { return widenInt8(table[i >> 2], i & 3u, tableScale[row]); }

#include "embedding.glsl"
