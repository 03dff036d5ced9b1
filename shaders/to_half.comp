#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "to_half.glsl"

// y = x[offset .. offset + n) rounded to fp16 as the matrix units round their operands: the
// 16-bit copy of an activation that several products (or one wide one) then read at half the
// bytes and without rounding it in their fill. y holds whole quads of halves (n rounded up to a
// multiple of 4, the surplus zero), so every store is one 8-byte vector; x is read element by
// element, since offset need not be a multiple of 4.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { uvec2 y[]; };
layout(push_constant) uniform Push { uint offset, n; } pc;

void main() {
    GRID_STRIDE_LOOP(q, (pc.n + 3) / 4) {
        vec4 v = vec4(0.0);
        [[unroll]] for (uint i = 0; i < 4; i++)
            if (4 * q + i < pc.n) v[i] = x[pc.offset + 4 * q + i];
        y[q] = toHalf(v);
    }
}
