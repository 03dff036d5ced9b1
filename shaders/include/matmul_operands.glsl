// How the portable products (include/matmul.glsl) read A and B and read and write C, through
// element indices whatever the storage: loadA / loadB (element i), loadA4 / loadB4 (elements 4i
// .. 4i+3), readC / readC4 and writeC / writeC4, and readD / readD4 for the residual epilogue's
// addend D (include/matmul_epilogue.glsl), stored as C is, at EPILOGUE_BINDING: binding 3, or 4
// past an int8 B's scales; writeH / writeH4 for the gate epilogue's hidden H, stored as C is, at
// EPILOGUE_BINDING + 2, and asStored, a value as C stores it. Every binding has its fp32 views. An including
// shader that defines STORED_16BIT (and enables GL_EXT_shader_16bit_storage before this) gets
// uint16_t views on the same bindings besides, and A_STORAGE, B_STORAGE, C_STORAGE
// (include/storage.glsl's codes) choose per pipeline which view each operand uses: a 16-bit
// element is widened as it is loaded, and an fp32 sum narrowed as it is stored. Without
// STORED_16BIT the module declares no 16-bit type, so a device without 16-bit storage loads it.
// An including shader that defines MATMUL_INT8_B declares B itself (include/matmul_int8_b.glsl).
// A group of four halves is 8 bytes, a u16vec4: the vec4 views and the u16vec4 views index the
// same aligned groups of four elements, so MatMulKernel.VectorLoads's alignment serves both.
#ifndef VKPROMPT_MATMUL_OPERANDS_GLSL
#define VKPROMPT_MATMUL_OPERANDS_GLSL
#include "storage.glsl"

#ifdef MATMUL_INT8_B
#define EPILOGUE_BINDING 4
#else
#define EPILOGUE_BINDING 3
#endif

layout(std430, binding = 0) readonly buffer BufA { float a[]; };
layout(std430, binding = 0) readonly buffer BufA4 { vec4 a4[]; };
layout(std430, binding = 2) buffer BufC { float c[]; };
layout(std430, binding = 2) buffer BufC4 { vec4 c4[]; };
layout(std430, binding = EPILOGUE_BINDING) readonly buffer BufD { float addend[]; };
layout(std430, binding = EPILOGUE_BINDING) readonly buffer BufD4 { vec4 addend4[]; };
layout(std430, binding = EPILOGUE_BINDING + 2) writeonly buffer BufH { float hidden[]; };
layout(std430, binding = EPILOGUE_BINDING + 2) writeonly buffer BufH4 { vec4 hidden4[]; };
#ifndef MATMUL_INT8_B
layout(std430, binding = 1) readonly buffer BufB { float b[]; };
layout(std430, binding = 1) readonly buffer BufB4 { vec4 b4[]; };
#endif

#ifdef STORED_16BIT
layout(constant_id = 7) const uint A_STORAGE = STORAGE_FP32;
// An activation B's storage, or a 16-bit weight's form (WeightPrecision's codes are the same).
layout(constant_id = 8) const uint B_STORAGE = STORAGE_FP32;
layout(constant_id = 9) const uint C_STORAGE = STORAGE_FP32;
layout(std430, binding = 0) readonly buffer BufA16 { uint16_t a16[]; };
layout(std430, binding = 0) readonly buffer BufA16x4 { u16vec4 a16x4[]; };
layout(std430, binding = 2) buffer BufC16 { uint16_t c16[]; };
layout(std430, binding = 2) buffer BufC16x4 { u16vec4 c16x4[]; };
layout(std430, binding = EPILOGUE_BINDING) readonly buffer BufD16 { uint16_t addend16[]; };
layout(std430, binding = EPILOGUE_BINDING) readonly buffer BufD16x4 { u16vec4 addend16x4[]; };
layout(std430, binding = EPILOGUE_BINDING + 2) writeonly buffer BufH16 { uint16_t hidden16[]; };
layout(std430, binding = EPILOGUE_BINDING + 2) writeonly buffer BufH16x4 { u16vec4 hidden16x4[]; };
#ifndef MATMUL_INT8_B
layout(std430, binding = 1) readonly buffer BufB16 { uint16_t b16[]; };
layout(std430, binding = 1) readonly buffer BufB16x4 { u16vec4 b16x4[]; };
#endif
#endif

float loadA(uint i) {
#ifdef STORED_16BIT
    if (A_STORAGE != STORAGE_FP32) return widenStored(uint(a16[i]), A_STORAGE);
#endif
    return a[i];
}

vec4 loadA4(uint i) {
#ifdef STORED_16BIT
    if (A_STORAGE != STORAGE_FP32) return widenStored(uvec4(a16x4[i]), A_STORAGE);
#endif
    return a4[i];
}

#ifndef MATMUL_INT8_B
float loadB(uint i) {
#ifdef STORED_16BIT
    if (B_STORAGE != STORAGE_FP32) return widenStored(uint(b16[i]), B_STORAGE);
#endif
    return b[i];
}

vec4 loadB4(uint i) {
#ifdef STORED_16BIT
    if (B_STORAGE != STORAGE_FP32) return widenStored(uvec4(b16x4[i]), B_STORAGE);
#endif
    return b4[i];
}
#endif

float readC(uint i) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) return widenStored(uint(c16[i]), C_STORAGE);
#endif
    return c[i];
}

vec4 readC4(uint i) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) return widenStored(uvec4(c16x4[i]), C_STORAGE);
#endif
    return c4[i];
}

float readD(uint i) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) return widenStored(uint(addend16[i]), C_STORAGE);
#endif
    return addend[i];
}

vec4 readD4(uint i) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) return widenStored(uvec4(addend16x4[i]), C_STORAGE);
#endif
    return addend4[i];
}

void writeC(uint i, float v) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) {
        c16[i] = uint16_t(narrowStored(v, C_STORAGE));
        return;
    }
#endif
    c[i] = v;
}

void writeC4(uint i, vec4 v) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) {
        c16x4[i] = u16vec4(narrowStored(v, C_STORAGE));
        return;
    }
#endif
    c4[i] = v;
}

void writeH(uint i, float v) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) {
        hidden16[i] = uint16_t(narrowStored(v, C_STORAGE));
        return;
    }
#endif
    hidden[i] = v;
}

void writeH4(uint i, vec4 v) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) {
        hidden16x4[i] = u16vec4(narrowStored(v, C_STORAGE));
        return;
    }
#endif
    hidden4[i] = v;
}

float asStored(float v) {
#ifdef STORED_16BIT
    if (C_STORAGE != STORAGE_FP32) return widenStored(narrowStored(v, C_STORAGE), C_STORAGE);
#endif
    return v;
}

#endif
