namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.ToHalfKernel"/>: fp16 to nearest, saturated at
/// ±65504, NaN kept.</summary>
internal static class ToHalfReference
{
    public static void Run(ReadOnlySpan<float> x, Span<ushort> y)
    {
        for (int i = 0; i < x.Length; i++)
            y[i] = HalfFloat.ToFp16(float.IsNaN(x[i]) ? x[i] : Math.Clamp(x[i], -HalfFloat.Fp16Max, HalfFloat.Fp16Max));
    }
}
