namespace VkPrompt.Runtime.Kernels;

/// <summary>Dropout that a kernel applies as it passes over a tensor anyway (the activations'
/// output, the gradient their backward reads) instead of a <see cref="DropoutKernel"/> pass of
/// its own: the mask DropoutKernel draws for <paramref name="Seed"/> and <paramref name="Stream"/>
/// over the flat tensor, kept elements scaled by <see cref="DropoutKernel.KeepScale"/>, bit for
/// bit what the separate pass would give. Rate 0 is no dropout. TBuffer is the GPU buffer of a
/// dispatch or the tensor of a backend.</summary>
internal readonly record struct DropoutMask<TBuffer>(float Rate, TBuffer Seed, uint Stream) where TBuffer : class
{
    /// <summary>The same mask with its seed in another buffer (a backend's tensor as a dispatch's buffer).</summary>
    public DropoutMask<TOther> Select<TOther>(Func<TBuffer, TOther> buffer) where TOther : class => new(Rate, buffer(Seed), Stream);
}

/// <summary>What a kernel checks and pushes of a <see cref="DropoutMask{TBuffer}"/>.</summary>
static class DropoutMasks
{
    /// <summary>The keep threshold and scale, with the seed buffer; threshold 0, scale 1 and no
    /// seed when there is no dropout (none given, or rate 0), which the shaders take as off.</summary>
    public static (uint Threshold, float Scale, GpuBuffer? Seed) Check(string kernel, DropoutMask<GpuBuffer>? mask, long elements)
    {
        if (mask is not { } m) return (0, 1f, null);
        uint threshold = DropoutKernel.KeepThreshold(m.Rate);
        if (threshold == 0) return (0, 1f, null);
        BufferChecks.Require(kernel, m.Seed, 1, "seed");
        // The activations' seed bindings admit a 16-bit placeholder when there is no dropout
        // (GatedActivationKernel, ReluKernel), so the command graph would let a 16-bit seed through.
        if (m.Seed.Storage != ActivationPrecision.Fp32)
            throw new ArgumentException($"{kernel}: the dropout seed {m.Seed.Name} is a buffer of {m.Seed.Storage.Name()} activations; it must be a plain buffer");
        // Element indices are 32-bit in the shaders, as DropoutKernel's are.
        if (elements > uint.MaxValue) throw new ArgumentOutOfRangeException(nameof(elements), $"{kernel}: dropout indexes at most 2^32 elements, got {elements}");
        return (threshold, DropoutKernel.KeepScale(m.Rate), m.Seed);
    }

    /// <summary>The push constants of the elementwise kernels that drop as they go (dropout.comp,
    /// the activations and their backwards): n and the mask's threshold, scale and stream, with
    /// the seed buffer (null without dropout).</summary>
    public static (MaskedPush Push, GpuBuffer? Seed) Push(string kernel, DropoutMask<GpuBuffer>? mask, int n)
    {
        var (threshold, scale, seed) = Check(kernel, mask, n);
        return (new MaskedPush((uint)n, threshold, scale, mask?.Stream ?? 0), seed);
    }
}

/// <summary>{n, threshold, scale, stream}: the push block of the kernels <see cref="DropoutMasks.Push"/> serves.</summary>
readonly record struct MaskedPush(uint N, uint Threshold, float Scale, uint Stream);

/// <summary>
/// Inverted dropout for training, in place: each element is kept with probability 1 - rate and
/// scaled by 1 / (1 - rate), or zeroed. The mask is a pure function of (seed, stream, index)
/// (Philox-2x32-10, shaders/include/philox.glsl), so the backward pass regenerates it from the
/// same arguments instead of storing it. Give every dropout site of a step its own stream and
/// every step its own seed.
/// </summary>
internal static class DropoutKernel
{
    static readonly KernelLayout Layout = new([Access.Read, Access.Read, Access.Write], 16);

    /// <summary>y = mask * x / (1 - rate), into <paramref name="output"/> where given, else into x
    /// itself. Rate 0 (evaluation) leaves x alone and copies it to a separate output.
    /// <paramref name="seed"/> holds one uint, read when the graph runs, so replays of a recorded
    /// step can differ.</summary>
    public static void Forward(CommandGraph g, GpuBuffer x, int n, float rate, GpuBuffer seed, uint stream, GpuBuffer? output = null)
    {
        BufferChecks.NonNegative("dropout", (n, nameof(n)));
        BufferChecks.Require("dropout", x, n, "x");
        BufferChecks.Require("dropout", seed, 1, "seed");
        var y = output ?? x;
        BufferChecks.Require("dropout", y, n, "output");
        uint threshold = KeepThreshold(rate);
        if (threshold == 0)
        {
            if (y != x && n > 0) g.Copy(x, y, n * 4L);
            return;
        }
        var k = g.Context.Kernel("dropout", Layout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), new MaskedPush((uint)n, threshold, KeepScale(rate), stream), x, seed, y);
    }

    /// <summary>dx = mask * dy / (1 - rate) with the forward's mask (dropout is linear in x for a
    /// fixed mask, so its backward is the forward applied to the gradient), into
    /// <paramref name="dx"/> where given, else in place.</summary>
    public static void Backward(CommandGraph g, GpuBuffer dy, int n, float rate, GpuBuffer seed, uint stream, GpuBuffer? dx = null) =>
        Forward(g, dy, n, rate, seed, stream, dx);

    /// <summary>An element is kept when its 32-bit Philox draw is at least this: round(rate * 2^32).</summary>
    public static uint KeepThreshold(float rate)
    {
        if (!(rate >= 0f && rate < 1f))
            throw new ArgumentOutOfRangeException(nameof(rate), rate, "dropout rate must be in [0, 1)");
        return (uint)Math.Min(uint.MaxValue, Math.Round(rate * 4294967296.0));
    }

    /// <summary>The factor kept elements are multiplied by, 1 / (1 - rate) rounded to float once.</summary>
    public static float KeepScale(float rate) => (float)(1.0 / (1.0 - rate));
}
