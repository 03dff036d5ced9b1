using System.Numerics;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="DropoutKernel"/>: the same Philox-2x32-10 bits, the same
/// integer threshold and the same float scale, so its masks and its float results are
/// bit-identical to the GPU's.</summary>
internal static class DropoutReference
{
    public static void Forward<T>(Span<T> x, int n, float rate, uint seed, uint stream) where T : IFloatingPointIeee754<T>
    {
        uint threshold = DropoutKernel.KeepThreshold(rate);
        if (threshold == 0) return;
        T scale = T.CreateChecked(DropoutKernel.KeepScale(rate));
        for (int i = 0; i < n; i++)
            x[i] = Keep((uint)i, threshold, seed, stream) ? x[i] * scale : T.Zero;
    }

    public static void Backward<T>(Span<T> dx, int n, float rate, uint seed, uint stream) where T : IFloatingPointIeee754<T> =>
        Forward(dx, n, rate, seed, stream);

    public static bool Keep(uint index, uint threshold, uint seed, uint stream) =>
        Philox2x32_10(index, stream, seed).X >= threshold;

    /// <summary>Philox-2x32-10 of the counter (c0, c1) under key; mirrors shaders/include/philox.glsl.</summary>
    public static (uint X, uint Y) Philox2x32_10(uint c0, uint c1, uint key)
    {
        for (int round = 0; round < 10; round++)
        {
            ulong product = (ulong)0xD256D193u * c0;
            (c0, c1) = ((uint)(product >> 32) ^ key ^ c1, (uint)product);
            key += 0x9E3779B9u;
        }
        return (c0, c1);
    }
}
