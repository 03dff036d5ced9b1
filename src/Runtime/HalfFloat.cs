using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace VkPrompt.Runtime;

/// <summary>
/// fp32 to and from the 16-bit weight formats, bit for bit as the shaders widen them: fp16 is
/// IEEE binary16 (<see cref="Half"/>), bf16 the upper 16 bits of an fp32. Both round to nearest,
/// ties to even. <see cref="Round"/> gives the fp32 value a weight has once stored, which is what
/// the CPU backend and the tests compute with so that they see exactly what the device sees.
/// </summary>
internal static class HalfFloat
{
    /// <summary>The largest finite fp16.</summary>
    public const float Fp16Max = 65504f;

    // Halfway between 65504 and the next step (65536): from here on fp16 rounds to infinity.
    const float Fp16Overflow = 65520f;

    // Conversions go through a scratch buffer this many elements long at a time.
    const int Slice = 4096;

    public static ushort ToFp16(float x) => BitConverter.HalfToUInt16Bits((Half)x);

    public static float FromFp16(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort ToBf16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        // Rounding would carry a NaN's low payload bits into the exponent; keep the sign and high
        // payload and set the quiet bit so it stays a NaN.
        if (float.IsNaN(x)) return (ushort)((bits >> 16) | 0x40);
        // Adding 0x7FFF rounds up exactly when the dropped half is above one half; the kept
        // lowest bit adds the last unit for a tie to an odd value. A carry out of the mantissa
        // steps the exponent, which is the correct rounding (up to infinity past bf16's maximum).
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    public static float FromBf16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Rounds each value to <paramref name="p"/> and stores its 16 bits.</summary>
    /// <exception cref="OverflowException">fp16 was asked for and a value would become infinite.</exception>
    public static void Encode(ReadOnlySpan<float> src, Span<ushort> dst, WeightPrecision p)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"{src.Length} values need {src.Length} halves, got {dst.Length}", nameof(dst));
        switch (p)
        {
            case WeightPrecision.Fp16:
                CheckFp16Range(src);
                TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<ushort, Half>(dst));
                break;
            case WeightPrecision.Bf16:
                for (int i = 0; i < src.Length; i++) dst[i] = ToBf16(src[i]);
                break;
            default:
                throw new ArgumentException("fp32 values are not stored as halves", nameof(p));
        }
    }

    /// <summary>Rounds each value to bf16 and stores that as fp16 the way the matrix units take a
    /// bf16 weight (include/to_half.glsl): exact for every bf16 within fp16's normal range,
    /// rounded to nearest below it, saturated at ±65504 above it, NaN kept. A product on the matrix
    /// units then reads the very halves it would otherwise have converted in every tile.</summary>
    public static void EncodeBf16AsFp16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"{src.Length} values need {src.Length} halves, got {dst.Length}", nameof(dst));
        Span<float> rounded = stackalloc float[Math.Min(Slice, src.Length)];
        for (int at = 0; at < src.Length; at += Slice)
        {
            var part = src.Slice(at, Math.Min(Slice, src.Length - at));
            var r = rounded[..part.Length];
            for (int i = 0; i < part.Length; i++)
            {
                float b = FromBf16(ToBf16(part[i]));
                r[i] = float.IsNaN(b) ? b : Math.Clamp(b, -Fp16Max, Fp16Max);
            }
            TensorPrimitives.ConvertToHalf(r, MemoryMarshal.Cast<ushort, Half>(dst.Slice(at, part.Length)));
        }
    }

    /// <summary>Widens stored halves back to fp32 (exact).</summary>
    public static void Decode(ReadOnlySpan<ushort> src, Span<float> dst, WeightPrecision p)
    {
        if (dst.Length != src.Length) throw new ArgumentException($"{src.Length} halves need {src.Length} values, got {dst.Length}", nameof(dst));
        switch (p)
        {
            case WeightPrecision.Fp16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(src), dst);
                break;
            case WeightPrecision.Bf16:
                for (int i = 0; i < src.Length; i++) dst[i] = FromBf16(src[i]);
                break;
            default:
                throw new ArgumentException("fp32 values are not stored as halves", nameof(p));
        }
    }

    /// <summary>Replaces each value by the one it becomes when stored as <paramref name="p"/>;
    /// fp32 leaves them as they are.</summary>
    /// <exception cref="OverflowException">fp16 was asked for and a value would become infinite.</exception>
    public static void Round(Span<float> values, WeightPrecision p)
    {
        if (p == WeightPrecision.Fp32) return;
        Span<ushort> halves = stackalloc ushort[Math.Min(Slice, values.Length)];
        for (int at = 0; at < values.Length; at += Slice)
        {
            var part = values.Slice(at, Math.Min(Slice, values.Length - at));
            var h = halves[..part.Length];
            Encode(part, h, p);
            Decode(h, part, p);
        }
    }

    static void CheckFp16Range(ReadOnlySpan<float> src)
    {
        if (src.IsEmpty) return;
        float max = TensorPrimitives.MaxMagnitude(src);
        if (Math.Abs(max) >= Fp16Overflow)
            throw new OverflowException($"a value of magnitude {Math.Abs(max):G6} is beyond fp16's largest finite value ({Fp16Max}); store these weights as bf16 or fp32");
    }
}
