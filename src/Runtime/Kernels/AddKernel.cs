namespace VkPrompt.Runtime.Kernels;

/// <summary>out = x + alpha * y over n floats, into x itself where no output is given (residual
/// connections, gradient accumulation). With a <see cref="DropoutMask{TBuffer}"/>, y is dropped as
/// it is read, bit for bit what a <see cref="DropoutKernel"/> pass over it first would give.</summary>
internal static class AddKernel
{
    // x is read through binding 0 and written through binding 2 when the sum goes into it.
    internal static readonly KernelLayout Layout = new([Access.Read, Access.Read, Access.Write, Access.Read], 20);

    internal readonly record struct Push(uint N, uint Threshold, float Scale, uint Stream, float Alpha);

    public static void Forward(CommandGraph g, GpuBuffer x, GpuBuffer y, int n, float alpha = 1f, DropoutMask<GpuBuffer>? dropout = null, GpuBuffer? output = null)
    {
        const string name = "add";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, x, n, "x");
        BufferChecks.Require(name, y, n, "y");
        if (output is not null) BufferChecks.Require(name, output, n, "output");
        var (mask, seed) = DropoutMasks.Push(name, dropout, n);
        var k = g.Context.Kernel(name, Layout, Grid.LinearSize);
        // Without dropout the seed binding holds x, which the shader then never reads through it.
        g.Dispatch(k, Grid.Linear(n), new Push(mask.N, mask.Threshold, mask.Scale, mask.Stream, alpha), x, y, output ?? x, seed ?? x);
    }
}
