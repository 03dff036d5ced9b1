#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Token embedding from an fp32 table; include/embedding.glsl holds the algorithm.
layout(std430, binding = 0) readonly buffer Table { float table[]; };

float loadTable(uint i, uint row) { return table[i]; }

#include "embedding.glsl"
