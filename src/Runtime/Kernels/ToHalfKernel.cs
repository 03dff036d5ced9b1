namespace VkPrompt.Runtime.Kernels;

/// <summary>y = x[offset .. offset + n) as fp16, saturated at ±65504 (to_half.comp): the 16-bit
/// copy of an activation that the matrix-unit product reads in place of the fp32 one.</summary>
internal static class ToHalfKernel
{
    /// <summary>The shader, as a profile labels its dispatches.</summary>
    public const string Shader = "to_half";

    static readonly KernelLayout Layout = new([Access.Read, Access.Write], 8);

    readonly record struct Push(uint Offset, uint N);

    /// <summary>Bytes the output needs for <paramref name="n"/> halves: whole quads.</summary>
    public static long OutputBytes(long n) => (n + 3) / 4 * 8;

    /// <exception cref="GpuException">The device lacks fp16 arithmetic (the conversion is an fp16 one).</exception>
    public static void Run(CommandGraph g, GpuBuffer x, long offset, GpuBuffer y, long n)
    {
        if (!g.Context.Capabilities.ShaderFloat16) throw new GpuException("to_half needs shaderFloat16, which this device lacks");
        if (offset < 0 || n <= 0 || offset + n > x.Length<float>()) throw new ArgumentOutOfRangeException(nameof(n), $"to_half: [{offset}, {offset + n}) is outside {x.Name} ({x.Length<float>()} floats)");
        if (y.Bytes < OutputBytes(n)) throw new ArgumentException($"to_half: {y.Name} holds {y.Bytes} bytes, {n} halves need {OutputBytes(n)}", nameof(y));
        var k = g.Context.Kernel(Shader, Layout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear((n + 3) / 4), new Push((uint)offset, (uint)n), x, y);
    }
}
