// Activations kept between kernels as fp32, fp16 or bf16 (ActivationPrecision in
// src/Runtime/ActivationPrecision.cs), chosen per binding by a specialization constant with these
// codes. A kernel declares each binding that may be 16-bit twice, as float[] and as uint16_t[]
// (GL_EXT_shader_16bit_storage, which the including shader enables), and reads or writes the
// view its constant names; the other view is never touched, so a pipeline keeps one path.
// Loads widen to fp32 and stores narrow from fp32 with integer operations only: no 16-bit
// arithmetic (shaderFloat16) is needed, and the rounding is round-to-nearest-even on every device
// (a float-to-half conversion may round toward zero in Vulkan), which ActivationPrecisions.Round
// reproduces on the CPU. fp16 saturates at ±65504 instead of becoming infinite, as the matrix
// units' operands do (include/to_half.glsl); a NaN stays a NaN in both.
#ifndef VKPROMPT_STORAGE_GLSL
#define VKPROMPT_STORAGE_GLSL

const uint STORAGE_FP32 = 0u;
const uint STORAGE_FP16 = 1u;
const uint STORAGE_BF16 = 2u;

// A stored 16-bit value (zero-extended) as fp32.
float widenStored(uint h, uint storage) {
    return storage == STORAGE_BF16 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}

vec4 widenStored(uvec4 h, uint storage) {
    return storage == STORAGE_BF16 ? uintBitsToFloat(h << 16)
                                   : vec4(unpackHalf2x16(h.x | (h.y << 16)), unpackHalf2x16(h.z | (h.w << 16)));
}

uint narrowBf16(float v) {
    const uint x = floatBitsToUint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (x >> 16) | 0x40u;   // keep a NaN a NaN
    return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
}

uint narrowFp16(float v) {
    const uint x = floatBitsToUint(v);
    const uint sign = (x >> 16) & 0x8000u;
    const uint ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u;                       // NaN
    if (ax >= 0x477ff000u) return sign | 0x7bffu;                      // from 65520 (and inf): 65504
    if (ax < 0x38800000u)                                              // below 2^-14: subnormal,
        return sign | uint(roundEven(uintBitsToFloat(ax) * 16777216.0)); // in units of 2^-24 (exact)
    const uint r = ax - 0x38000000u;                                   // rebias the exponent
    return sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13);            // and round 13 bits off
}

// fp32 to the 16 bits a buffer of this storage keeps (in the low half).
uint narrowStored(float v, uint storage) {
    return storage == STORAGE_BF16 ? narrowBf16(v) : narrowFp16(v);
}

uvec4 narrowStored(vec4 v, uint storage) {
    return uvec4(narrowStored(v.x, storage), narrowStored(v.y, storage), narrowStored(v.z, storage), narrowStored(v.w, storage));
}

#endif
