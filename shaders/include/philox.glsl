// Philox-2x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
// counter-based generator cuRAND and PyTorch use for dropout. Stateless: the bits for counter c
// under key k are a pure function of (c, k), so a backward pass regenerates the forward's mask
// instead of storing it, and DropoutReference computes the same bits in C#.
#ifndef VKPROMPT_PHILOX_GLSL
#define VKPROMPT_PHILOX_GLSL

const uint PHILOX_M = 0xD256D193u;
const uint PHILOX_W = 0x9E3779B9u;

uvec2 philox2x32_10(uvec2 counter, uint key) {
    for (int round = 0; round < 10; round++) {
        uint hi, lo;
        umulExtended(PHILOX_M, counter.x, hi, lo);
        counter = uvec2(hi ^ key ^ counter.y, lo);
        key += PHILOX_W;
    }
    return counter;
}

#endif
