// fp32 to fp16 as the matrix units take their operands: saturated at ±65504 rather than turned
// into infinities (T5's feed-forward activations can exceed fp16's range; Hugging Face's T5
// clamps its fp16 hidden states the same way), with a NaN kept as NaN (clamp may return a bound
// for it) so that a diverged activation shows in the loss as it does on the portable product.
// Needs GL_EXT_shader_explicit_arithmetic_types_float16. Four values to four packed halves.
#ifndef VKPROMPT_TO_HALF_GLSL
#define VKPROMPT_TO_HALF_GLSL

uvec2 toHalf(vec4 v) {
    const f16vec4 h = f16vec4(mix(clamp(v, -65504.0, 65504.0), v, isnan(v)));
    return uvec2(packFloat2x16(h.xy), packFloat2x16(h.zw));
}

#endif
