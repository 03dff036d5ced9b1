#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "to_half.glsl"

// y = x[offset .. offset + n) rounded to fp16 as the matrix units round their operands: the
// 16-bit copy of an activation that several products (or one wide one) then read at half the
// bytes and without rounding it in their fill. y holds whole quads of halves (n rounded up to a
// multiple of 4, the surplus zero), so every store is one 8-byte vector. x is read a 16-byte
// vector at a time where offset is a multiple of 4 (an activation's start, as products use them),
// element by element otherwise and for a last partial quad.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) writeonly buffer Y { uvec2 y[]; };
layout(push_constant) uniform Push { uint offset, n; } pc;

void main() {
    const bool aligned = (pc.offset & 3u) == 0u;
    GRID_STRIDE_LOOP(q, (pc.n + 3) / 4) {
        vec4 v = vec4(0.0);
        if (aligned && 4 * q + 4 <= pc.n) v = x4[pc.offset / 4 + q];
        else {
            [[unroll]] for (uint i = 0; i < 4; i++)
                if (4 * q + i < pc.n) v[i] = x[pc.offset + 4 * q + i];
        }
        y[q] = toHalf(v);
    }
}
