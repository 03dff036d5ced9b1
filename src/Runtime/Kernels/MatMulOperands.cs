namespace VkPrompt.Runtime.Kernels;

/// <summary>Operand values for timing and checking products on the device: a hash of the
/// element's index, uniform in [-1, 1), so a reference recomputes any element without a host
/// copy of buffers of hundreds of MiB (<c>vkprompt bench matmul</c>), and a timing reads data
/// as varied as a step's (<see cref="MatMulTuner"/>).</summary>
internal static class MatMulOperands
{
    public const ulong SeedA = 1, SeedB = 2;
    const int Chunk = 1 << 22;

    public static float Value(ulong seed, long index)
    {
        // splitmix64 of (seed, index)
        ulong z = unchecked(seed * 0x9E3779B97F4A7C15UL + (ulong)index * 0xBF58476D1CE4E5B9UL + 0x94D049BB133111EBUL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return (float)((z >> 40) * (2.0 / (1 << 24)) - 1.0);
    }

    /// <summary>The scale of every row of an int8 operand: the values are stored as
    /// round(value · 127), so a stored value depends on its index alone, whatever row length a
    /// product reads the buffer with (<see cref="FillInt8Scales"/>).</summary>
    public const float Int8Scale = 1f / Int8Rows.Max;

    static sbyte Int8(ulong seed, long index) => (sbyte)MathF.Round(Value(seed, index) * Int8Rows.Max, MidpointRounding.ToEven);

    /// <summary>The value as stored in <paramref name="p"/> and widened back to fp32.</summary>
    public static float Stored(ulong seed, long index, WeightPrecision p) => p switch
    {
        WeightPrecision.Fp16 => HalfFloat.FromFp16(HalfFloat.ToFp16(Value(seed, index))),
        WeightPrecision.Bf16 => HalfFloat.FromBf16(HalfFloat.ToBf16(Value(seed, index))),
        WeightPrecision.Int8 => Int8(seed, index) * Int8Scale,
        _ => Value(seed, index),
    };

    /// <summary>Sets the first <paramref name="rows"/> row scales of an int8 operand to
    /// <see cref="Int8Scale"/>.</summary>
    public static void FillInt8Scales(GpuBuffer scales, long rows)
    {
        var values = new float[rows];
        Array.Fill(values, Int8Scale);
        scales.Upload<float>(values);
    }

    /// <summary>Writes the first <paramref name="elements"/> values of <paramref name="seed"/> into
    /// <paramref name="buffer"/>, a buffer of activations stored as <paramref name="p"/>
    /// (<see cref="GpuBuffer.Storage"/>).</summary>
    public static void Fill(GpuBuffer buffer, long elements, ulong seed, ActivationPrecision p) =>
        // A 16-bit activation holds what a weight of the same form does: the values lie in [-1, 1),
        // where fp16's saturation never applies.
        Fill(buffer, elements, seed, p switch
        {
            ActivationPrecision.Bf16 => WeightPrecision.Bf16,
            ActivationPrecision.Fp16 => WeightPrecision.Fp16,
            _ => WeightPrecision.Fp32,
        });

    /// <summary>Writes the first <paramref name="elements"/> values of <paramref name="seed"/> into
    /// <paramref name="buffer"/>, stored as <paramref name="p"/>; <paramref name="rounding"/> bf16
    /// with <paramref name="p"/> fp16 stores them as <see cref="SplitTensor"/> stores bf16 weights
    /// for the matrix units (<see cref="DevicePlan.StoredPrecision"/>).</summary>
    public static void Fill(GpuBuffer buffer, long elements, ulong seed, WeightPrecision p, WeightPrecision? rounding = null)
    {
        bool bf16AsFp16 = (rounding, p) == (WeightPrecision.Bf16, WeightPrecision.Fp16);
        var values = new float[(int)Math.Min(Chunk, elements)];
        var halves = p is WeightPrecision.Fp32 or WeightPrecision.Int8 ? [] : new ushort[values.Length];
        var bytes = p == WeightPrecision.Int8 ? new sbyte[values.Length] : [];
        for (long at = 0; at < elements; at += Chunk)
        {
            int n = (int)Math.Min(Chunk, elements - at);
            long first = at;
            // Hundreds of MiB at the largest shapes: the cores share the hashing.
            Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(0, n, 1 << 16), range =>
            {
                for (int i = range.Item1; i < range.Item2; i++) values[i] = Value(seed, first + i);
            });
            var part = values.AsSpan(0, n);
            if (p == WeightPrecision.Fp32) buffer.Upload<float>(part, at);
            else if (p == WeightPrecision.Int8)
            {
                for (int i = 0; i < n; i++) bytes[i] = Int8(seed, first + i);
                buffer.Upload<sbyte>(bytes.AsSpan(0, n), at);
            }
            else
            {
                if (bf16AsFp16) HalfFloat.EncodeBf16AsFp16(part, halves.AsSpan(0, n));
                else HalfFloat.Encode(part, halves.AsSpan(0, n), p);
                buffer.Upload<ushort>(halves.AsSpan(0, n), at);
            }
        }
    }
}
