#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
#include "common.glsl"

// matmul_int8.comp with A and C each fp32, fp16 or bf16 activations (A_STORAGE, C_STORAGE;
// include/matmul_operands.glsl), as in a large model whose int8 weights meet bf16 activations.
// A file of its own rather than specialization constants in matmul_int8.comp: the capability a
// 16-bit declaration needs (StorageBuffer16BitAccess) belongs to the whole SPIR-V module, whatever
// a constant leaves unused, and matmul_int8.comp must load on devices without 16-bit storage.
#define MATMUL_INT8_B
#define STORED_16BIT
#include "matmul_int8_b.glsl"
#include "matmul_operands.glsl"
#include "matmul.glsl"
