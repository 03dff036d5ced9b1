using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>Activation buffers of each <see cref="ActivationPrecision"/> for the kernel tests:
/// filled from fp32 values as a kernel would store them, read back widened to fp32.</summary>
static class StoredActivations
{
    /// <summary>Bits no kernel stores from a finite input: a NaN in both 16-bit formats, put in
    /// an output buffer before a kernel runs so that an element it leaves unwritten, or a
    /// padding element it writes, shows.</summary>
    public const ushort Unwritten = 0xFFFF;

    /// <summary><paramref name="values"/> as a buffer of <paramref name="p"/> holds them
    /// (<see cref="ActivationPrecisions.Round"/>): what a reference computes from.</summary>
    public static float[] Rounded(float[] values, ActivationPrecision p)
    {
        var r = (float[])values.Clone();
        ActivationPrecisions.Round(r, p);
        return r;
    }

    /// <summary>A buffer of <paramref name="p"/> holding <paramref name="values"/> rounded to it;
    /// skips the test on a device without 16-bit storage.</summary>
    public static GpuBuffer Upload(GpuContext ctx, float[] values, ActivationPrecision p, string name)
    {
        var b = Output(ctx, values.Length, p, name);
        if (p == ActivationPrecision.Fp32) b.Upload<float>(values);
        else b.Upload<ushort>(Rounded(values, p).Select(v => Encode(v, p)).ToArray());
        return b;
    }

    /// <summary>A buffer of <paramref name="n"/> elements of <paramref name="p"/>, a 16-bit one
    /// filled with <see cref="Unwritten"/> (padding included); skips the test on a device
    /// without 16-bit storage.</summary>
    public static GpuBuffer Output(GpuContext ctx, int n, ActivationPrecision p, string name)
    {
        Skip.IfNot(p.IsSupported(ctx.Capabilities), $"{ctx.Capabilities.Name} has no 16-bit storage buffers");
        var b = GpuBuffer.Activations(ctx, n, p, name);
        if (p != ActivationPrecision.Fp32) b.Upload<ushort>(Enumerable.Repeat(Unwritten, (int)b.StoredElements).ToArray());
        return b;
    }

    /// <summary>The first <paramref name="n"/> elements, widened to fp32. For a 16-bit buffer,
    /// asserts too that the padding after them is as <see cref="Output"/> left it.</summary>
    public static float[] Download(GpuBuffer b, int n)
    {
        if (b.Storage == ActivationPrecision.Fp32) return b.Download<float>()[..n];
        var bits = b.Download<ushort>();
        Assert.All(bits[n..], h => Assert.Equal(Unwritten, h));
        return bits[..n].Select(h => b.Storage == ActivationPrecision.Bf16 ? HalfFloat.FromBf16(h) : HalfFloat.FromFp16(h)).ToArray();
    }

    static ushort Encode(float rounded, ActivationPrecision p) =>
        p == ActivationPrecision.Bf16 ? HalfFloat.ToBf16(rounded) : HalfFloat.ToFp16(rounded);

    /// <summary>One unit in the last place of <paramref name="p"/> relative to a value's binade
    /// at most (2^-7 for bf16's 8 significant bits, 2^-10 for fp16's 11; 0 for fp32): how far
    /// two roundings of fp32 values that differ by less than that can land apart, relative to
    /// the larger value.</summary>
    public static double Ulp(ActivationPrecision p) => p switch
    {
        ActivationPrecision.Bf16 => 1.0 / 128,
        ActivationPrecision.Fp16 => 1.0 / 1024,
        _ => 0,
    };
}
