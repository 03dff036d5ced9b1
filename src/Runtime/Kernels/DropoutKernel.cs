namespace VkPrompt.Runtime.Kernels;

/// <summary>
/// Inverted dropout for training, in place: each element is kept with probability 1 - rate and
/// scaled by 1 / (1 - rate), or zeroed. The mask is a pure function of (seed, stream, index)
/// (Philox-2x32-10, shaders/include/philox.glsl), so the backward pass regenerates it from the
/// same arguments instead of storing it. Give every dropout site of a step its own stream and
/// every step its own seed.
/// </summary>
public static class DropoutKernel
{
    static readonly KernelLayout Layout = new([Access.Read, Access.Read, Access.Write], 16);

    readonly record struct Push(uint N, uint Threshold, float Scale, uint Stream);

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
        g.Dispatch(k, Grid.Linear(n), new Push((uint)n, threshold, KeepScale(rate), stream), x, seed, y);
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
