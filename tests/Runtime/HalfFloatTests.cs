using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

public sealed class HalfFloatTests
{
    [Theory]
    [InlineData(1f, 0x3C00)]
    [InlineData(-2f, 0xC000)]
    [InlineData(0.5f, 0x3800)]
    [InlineData(65504f, 0x7BFF)]
    [InlineData(65519f, 0x7BFF)]        // below the midpoint to 65536: rounds down to the maximum
    [InlineData(5.9604645e-8f, 0x0001)] // 2^-24, the smallest subnormal
    [InlineData(2.9802322e-8f, 0x0000)] // 2^-25, a tie with zero: to even
    [InlineData(1.00048828125f, 0x3C00)] // 1 + 2^-11, a tie: to even (down)
    [InlineData(1.00146484375f, 0x3C02)] // 1 + 3·2^-11, a tie: to even (up)
    public void Fp16RoundsToNearestEven(float x, int bits)
    {
        Assert.Equal((ushort)bits, HalfFloat.ToFp16(x));
        Assert.Equal((float)(Half)x, HalfFloat.FromFp16(HalfFloat.ToFp16(x)));
    }

    /// <summary>bf16 weights stored for the matrix units: the bf16 value itself wherever fp16
    /// holds it (its 8 significant bits fit fp16's 11), to nearest even in fp16's subnormal range,
    /// saturated past ±65504 as include/to_half.glsl saturates, a NaN kept.</summary>
    [Theory]
    [InlineData(1.00390625f, 0x3C00)]   // 1 + 2^-8 rounds to bf16's 1 first (a tie to even), not to fp16's 1 + 2^-8
    [InlineData(1.01171875f, 0x3C10)]   // 1 + 3·2^-8: bf16 1 + 2^-6 (a tie, up to even), exact in fp16
    [InlineData(-3.140625f, 0xC248)]    // a bf16 value, exact in fp16
    [InlineData(65504f, 0x7BFF)]
    [InlineData(70000f, 0x7BFF)]        // beyond fp16's range: saturated
    [InlineData(-1e30f, 0xFBFF)]
    [InlineData(float.NegativeInfinity, 0xFBFF)]
    [InlineData(8.9406967e-8f, 0x0002)] // 1.5·2^-24 in bf16, a tie between two fp16 subnormals: to even
    [InlineData(1e-10f, 0x0000)]
    public void Bf16AsFp16RoundsThroughBf16AndSaturates(float x, int bits)
    {
        var dst = new ushort[1];
        HalfFloat.EncodeBf16AsFp16([x], dst);
        Assert.Equal((ushort)bits, dst[0]);
    }

    [Fact]
    public void Bf16AsFp16IsTheBf16ValueWhereFp16HoldsIt()
    {
        var values = new float[10000];
        var rng = new Random(5);
        // Across fp16's normal range, [2^-14, 65504].
        for (int i = 0; i < values.Length; i++) values[i] = (float)((rng.Next(2) * 2 - 1) * (1 + rng.NextDouble() * 0.99) * Math.Pow(2, rng.Next(-14, 16)));
        values[^1] = float.NaN;
        var halves = new ushort[values.Length];
        HalfFloat.EncodeBf16AsFp16(values, halves);
        for (int i = 0; i < values.Length - 1; i++)
            Assert.Equal(HalfFloat.FromBf16(HalfFloat.ToBf16(values[i])), HalfFloat.FromFp16(halves[i]));
        Assert.True(float.IsNaN(HalfFloat.FromFp16(halves[^1])));
    }

    [Theory]
    [InlineData(1f, 0x3F80)]
    [InlineData(-1.5f, 0xBFC0)]
    [InlineData(1.00390625f, 0x3F80)]     // 1 + 2^-8, a tie: to even (down)
    [InlineData(1.01171875f, 0x3F82)]     // 1 + 3·2^-8, a tie: to even (up)
    [InlineData(1.0039072f, 0x3F81)]      // just above the tie: up
    [InlineData(1.0039053f, 0x3F80)]      // just below the tie: down
    [InlineData(float.PositiveInfinity, 0x7F80)]
    [InlineData(float.MaxValue, 0x7F80)]  // beyond bf16's maximum by more than half a step: infinity
    [InlineData(1e-40f, 0x0001)]          // an fp32 subnormal keeps its top bits
    public void Bf16RoundsToNearestEven(float x, int bits) => Assert.Equal((ushort)bits, HalfFloat.ToBf16(x));

    [Fact]
    public void Bf16KeepsEveryNaNANaN()
    {
        // A payload only in the low bits would round into the exponent and read as infinity.
        foreach (uint bits in new[] { 0x7F800001u, 0xFF80FFFFu, 0x7FFFFFFFu, 0x7FC00000u })
        {
            float nan = BitConverter.UInt32BitsToSingle(bits);
            Assert.True(float.IsNaN(HalfFloat.FromBf16(HalfFloat.ToBf16(nan))), $"0x{bits:X8}");
        }
    }

    /// <summary>Against the definition: of the two bf16 values around x, the nearer one, and the
    /// one with an even last bit on a tie, compared in double where both differences are exact.
    /// Past the largest finite bf16 the upper neighbour is 2^128 as if the exponent went on;
    /// choosing it means overflowing to infinity.</summary>
    [Fact]
    public void Bf16MatchesTheDefinitionOnRandomBitPatterns()
    {
        static double Value(ushort h) => (h & 0x7FFF) == 0x7F80 ? Math.CopySign(Math.Pow(2, 128), HalfFloat.FromBf16(h)) : HalfFloat.FromBf16(h);
        var rng = new Random(1);
        for (int i = 0; i < 200_000; i++)
        {
            uint bits = (uint)rng.NextInt64(0, 1L << 32);
            float x = BitConverter.UInt32BitsToSingle(bits);
            if (!float.IsFinite(x)) continue;
            ushort down = (ushort)(bits >> 16), up = (ushort)(down + 1);
            double dDown = Math.Abs(x - Value(down));
            double dUp = Math.Abs(x - Value(up));
            ushort expected = dDown < dUp ? down : dUp < dDown ? up : (down & 1) == 0 ? down : up;
            Assert.Equal(expected, HalfFloat.ToBf16(x));
        }
    }

    [Theory, InlineData(WeightPrecision.Fp16), InlineData(WeightPrecision.Bf16)]
    public void RoundIsEncodeThenDecode(WeightPrecision p)
    {
        // More than one conversion slice, with values over the whole of fp16's range.
        var x = Check.Random(10_000, 2, scale: 60_000f);
        x[0] = 3e-6f;
        x[1] = -7e-8f;
        var halves = new ushort[x.Length];
        HalfFloat.Encode(x, halves, p);
        var expected = halves.Select(h => p == WeightPrecision.Fp16 ? HalfFloat.FromFp16(h) : HalfFloat.FromBf16(h)).ToArray();
        var decoded = new float[x.Length];
        HalfFloat.Decode(halves, decoded, p);
        Assert.Equal(expected, decoded);
        var rounded = x.ToArray();
        HalfFloat.Round(rounded, p);
        Assert.Equal(expected, rounded);
        // Rounded values are exactly representable, so a second rounding changes nothing.
        HalfFloat.Round(rounded, p);
        Assert.Equal(expected, rounded);
        Assert.Equal(x.Select(v => p == WeightPrecision.Fp16 ? (float)(Half)v : HalfFloat.FromBf16(HalfFloat.ToBf16(v))), expected);
    }

    [Fact]
    public void Fp16RefusesValuesThatWouldBecomeInfinite()
    {
        var halves = new ushort[3];
        HalfFloat.Encode([1f, -65519f, 2f], halves, WeightPrecision.Fp16);
        var e = Assert.Throws<OverflowException>(() => HalfFloat.Encode([1f, -65520f, 2f], halves, WeightPrecision.Fp16));
        Assert.Contains("65520", e.Message);
        Assert.Contains("bf16", e.Message);
        Assert.Throws<OverflowException>(() => HalfFloat.Round([70_000f], WeightPrecision.Fp16));
        // bf16 has fp32's range.
        HalfFloat.Encode([1f, -65520f, 3e38f], halves, WeightPrecision.Bf16);
    }

    [Fact]
    public void Fp32IsNotAHalfFormat()
    {
        var values = new[] { 1.1f };
        HalfFloat.Round(values, WeightPrecision.Fp32);
        Assert.Equal(1.1f, values[0]);
        Assert.Throws<ArgumentException>(() => HalfFloat.Encode(values, new ushort[1], WeightPrecision.Fp32));
        Assert.Throws<ArgumentException>(() => HalfFloat.Encode(values, new ushort[2], WeightPrecision.Bf16));
    }
}
