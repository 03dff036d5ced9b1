// Bindings that may hold 16-bit activations (include/storage.glsl), in a kernel that must still
// run where the device has no 16-bit storage. A SPIR-V module that declares a uint16_t buffer
// requires the StorageBuffer16BitAccess capability, so such a device could not even build a
// pipeline from it, whatever path its constants choose. A kernel of this kind is therefore built
// twice from one body, include/NAME.glsl: NAME.comp, fp32 only, and NAME_half.comp, which defines
// STORED_16BIT before including the same body. STORED_BUFFER declares a binding as float[] and,
// in the 16-bit build only, also as uint16_t[] (name_16, over the same memory); loadStored and
// storeStored reach it through the view the binding's STORAGE constant names, widening on load
// and narrowing on store, and the fp32 build compiles them to plain indexing. The kernel class
// picks NAME_half only when one of its buffers is 16-bit (StoredKernel.For), so an fp32 run
// never loads a module with 16-bit declarations.
// The body includes this file before any declaration: the 16-bit build's #extension must come
// first.
#ifndef VKPROMPT_STORED_BUFFER_GLSL
#define VKPROMPT_STORED_BUFFER_GLSL

#include "storage.glsl"

#ifdef STORED_16BIT
#extension GL_EXT_shader_16bit_storage : require

#define STORED_BUFFER(b, access, Block, name)                                \
    layout(std430, binding = b) access buffer Block { float name[]; };        \
    layout(std430, binding = b) access buffer Block##_16 { uint16_t name##_16[]; };
#define loadStored(name, i, storage) \
    ((storage) == STORAGE_FP32 ? name[i] : widenStored(uint(name##_16[i]), (storage)))
#define storeStored(name, i, v, storage)                                      \
    { if ((storage) == STORAGE_FP32) name[i] = (v);                           \
      else name##_16[i] = uint16_t(narrowStored((v), (storage))); }

#else

#define STORED_BUFFER(b, access, Block, name) \
    layout(std430, binding = b) access buffer Block { float name[]; };
#define loadStored(name, i, storage) (name[i])
#define storeStored(name, i, v, storage) { name[i] = (v); }

#endif

#endif
