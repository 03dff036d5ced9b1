// Frozen weights stored as 16-bit halves and widened to fp32 as they are loaded: only storage
// is 16-bit (storageBuffer16BitAccess), every sum stays fp32. bf16 is the upper half of an fp32,
// so shifting its bits up widens it exactly with integer operations; it needs neither
// VK_KHR_shader_bfloat16 nor shaderFloat16. fp16 is widened by unpackHalf2x16, core GLSL, which
// needs no shaderFloat16 either. The including shader declares WEIGHT_BF16 (0: fp16, 1: bf16) as
// a specialization constant, so each pipeline keeps one of the two paths. 16-bit values cannot
// be passed around, only loaded, so these take them zero-extended to 32 bits.

float widen(uint h) {
    return WEIGHT_BF16 != 0 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}

vec4 widen(uvec4 h) {
    return WEIGHT_BF16 != 0 ? uintBitsToFloat(h << 16)
                            : vec4(unpackHalf2x16(h.x | (h.y << 16)), unpackHalf2x16(h.z | (h.w << 16)));
}
