namespace VkPrompt.Runtime;

/// <summary>
/// How the activations a block keeps between kernels (its normed input, q, k, v, the attention
/// context, the feed-forward's pre-activations and hidden output) are stored on the device. The
/// kernels that read them widen each element to fp32 as they load it, and every sum, norm
/// statistic, softmax and the loss stay fp32; the residual stream, the encoder and decoder
/// outputs, the logits and every gradient stay fp32 whatever is chosen (docs/numerics.md, "Activations in 16 bits", says
/// why, from the golden error). Halving the stored bytes halves the memory a stored block keeps
/// and the bytes each product moves.
/// </summary>
public enum ActivationPrecision
{
    /// <summary>4 bytes an element: exact, today's default on CPU devices.</summary>
    Fp32,
    /// <summary>bfloat16: 2 bytes with fp32's range and 8 significant bits; never overflows.</summary>
    Bf16,
    /// <summary>IEEE half: 2 bytes with 11 significant bits but a range that ends at 65504; stores
    /// saturate there rather than becoming infinite, and T5 v1.1's feed-forward exceeds it.</summary>
    Fp16,
}

/// <summary>Names, sizes, shader codes and device support of <see cref="ActivationPrecision"/>.</summary>
public static class ActivationPrecisions
{
    /// <summary>The spellings <see cref="Parse"/> accepts, as the CLI lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fp32", "bf16", "fp16", "auto"];

    /// <summary>The lower-case spelling <see cref="Parse"/> reads back.</summary>
    public static string Name(this ActivationPrecision p) => p switch
    {
        ActivationPrecision.Bf16 => "bf16",
        ActivationPrecision.Fp16 => "fp16",
        _ => "fp32",
    };

    /// <summary>fp32, bf16 or fp16 as named, in any case; null for "auto" (the device plan
    /// decides: <see cref="DevicePlan.Activations"/>).</summary>
    /// <exception cref="ArgumentException">any other spelling.</exception>
    public static ActivationPrecision? Parse(string text) => text.ToLowerInvariant() switch
    {
        "fp32" => ActivationPrecision.Fp32,
        "bf16" => ActivationPrecision.Bf16,
        "fp16" => ActivationPrecision.Fp16,
        "auto" => null,
        _ => throw new ArgumentException($"unknown activation precision '{text}'; expected one of {string.Join(", ", Names)}", nameof(text)),
    };

    /// <summary>"auto" for a model on several devices, from each device's own choice
    /// (<see cref="DevicePlan.Activations"/>; fp32 for the CPU backend): the one they all choose,
    /// else fp32, since every replica and stage must compute the same values.</summary>
    public static ActivationPrecision Resolve(IEnumerable<ActivationPrecision> choices)
    {
        var distinct = choices.Distinct().ToList();
        return distinct.Count == 1 ? distinct[0] : ActivationPrecision.Fp32;
    }

    /// <summary>The largest relative error of storing a value: 2^-24 (fp32), 2^-8 (bf16),
    /// 2^-11 (fp16), round to nearest (fp16 within its range).</summary>
    public static double UnitRoundoff(this ActivationPrecision p) => p switch
    {
        ActivationPrecision.Bf16 => Math.Pow(2, -8),
        ActivationPrecision.Fp16 => Math.Pow(2, -11),
        _ => Math.Pow(2, -24),
    };

    /// <summary>Bytes one stored element takes.</summary>
    public static int ElementBytes(this ActivationPrecision p) => p == ActivationPrecision.Fp32 ? 4 : 2;

    /// <summary>Bytes a buffer of <paramref name="elements"/> activations takes: 16-bit ones are
    /// rounded up to whole 16-byte words, so every kernel may read and write them four halves (8
    /// bytes) or eight at a time without a partial word at the end. The trace counts the same.</summary>
    public static long Bytes(this ActivationPrecision p, long elements) =>
        p == ActivationPrecision.Fp32 ? elements * 4 : (elements * 2 + 15) / 16 * 16;

    /// <summary>The value of the shaders' storage specialization constants (A_STORAGE, ...;
    /// shaders/include/storage.glsl): 0 fp32, 1 fp16, 2 bf16, the codes WeightPrecision's
    /// 16-bit forms have in the product kernels.</summary>
    internal static int ShaderCode(this ActivationPrecision p) => p switch
    {
        ActivationPrecision.Fp16 => 1,
        ActivationPrecision.Bf16 => 2,
        _ => 0,
    };

    /// <summary>Whether the device's kernels can keep activations this way: 16 bits need
    /// storageBuffer16BitAccess (and no 16-bit arithmetic: elements are widened on load).</summary>
    public static bool IsSupported(this ActivationPrecision p, DeviceCapabilities caps) =>
        p == ActivationPrecision.Fp32 || caps.StorageBuffer16Bit;

    /// <summary>Throws a <see cref="GpuException"/> saying what is missing when the device
    /// cannot keep activations as <paramref name="p"/>.</summary>
    public static void Require(this ActivationPrecision p, DeviceCapabilities caps)
    {
        if (!p.IsSupported(caps))
            throw new GpuException($"{p.Name()} activations need 16-bit storage buffers (storageBuffer16BitAccess), which {caps.Described} does not support; use --activations fp32");
    }

    /// <summary>The 16 bits a buffer of <paramref name="p"/> (bf16 or fp16) stores for each of
    /// <paramref name="values"/>, rounded as <see cref="Round"/> rounds them.</summary>
    public static void Encode(ReadOnlySpan<float> values, Span<ushort> bits, ActivationPrecision p)
    {
        if (p == ActivationPrecision.Fp32) throw new ArgumentException("fp32 activations are not stored as halves", nameof(p));
        for (int i = 0; i < values.Length; i++)
            bits[i] = p == ActivationPrecision.Bf16 ? HalfFloat.ToBf16(values[i]) : HalfFloat.ToFp16(float.IsNaN(values[i]) ? values[i] : Math.Clamp(values[i], -65504f, 65504f));
    }

    /// <summary>The values the 16-bit <paramref name="bits"/> of a buffer of <paramref name="p"/> hold.</summary>
    public static void Decode(ReadOnlySpan<ushort> bits, Span<float> values, ActivationPrecision p)
    {
        if (p == ActivationPrecision.Fp32) throw new ArgumentException("fp32 activations are not stored as halves", nameof(p));
        for (int i = 0; i < bits.Length; i++) values[i] = p == ActivationPrecision.Bf16 ? HalfFloat.FromBf16(bits[i]) : HalfFloat.FromFp16(bits[i]);
    }

    /// <summary>Rounds <paramref name="values"/> in place to what a buffer of
    /// <paramref name="p"/> holds: round to nearest even, fp16 saturating at ±65504 (as the
    /// shaders store it) rather than overflowing to infinity. The CPU backend's emulation.</summary>
    public static void Round(Span<float> values, ActivationPrecision p)
    {
        switch (p)
        {
            case ActivationPrecision.Bf16:
                HalfFloat.Round(values, WeightPrecision.Bf16);
                break;
            case ActivationPrecision.Fp16:
                foreach (ref var v in values) v = HalfFloat.FromFp16(HalfFloat.ToFp16(float.IsNaN(v) ? v : Math.Clamp(v, -65504f, 65504f)));
                break;
        }
    }
}
