// Frozen weights stored as int8 with one fp32 scale per row (WeightPrecision.Int8,
// src/Runtime/Int8Rows.cs): the value a kernel computes with is q * scale, one fp32 product
// (`precise`, so no driver fuses it into the sum it feeds), bit for bit what the CPU reference
// widens. The bytes are read four to a 32-bit word and sign-extended by bitfieldExtract, core
// GLSL on 32-bit integers: the module declares no 8-bit type, so it needs neither
// storageBuffer8BitAccess nor shaderInt8 and runs on every device, and a word is the vec4
// fetch's four consecutive weights. Words are little-endian, as on every Vulkan device.
#ifndef VKPROMPT_INT8_GLSL
#define VKPROMPT_INT8_GLSL

// Byte `at` (0..3) of `word`, widened and scaled.
float widenInt8(uint word, uint at, float scale) {
    precise float w = float(bitfieldExtract(int(word), int(at * 8u), 8)) * scale;
    return w;
}

// The four bytes of `word`, lowest first, widened and scaled (one row, one scale).
vec4 widenInt8(uint word, float scale) {
    const int v = int(word);
    precise vec4 w = vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8)) * scale;
    return w;
}

#endif
