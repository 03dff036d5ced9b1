namespace VkPrompt.Runtime.Kernels;

/// <summary>x += alpha * y over n floats (residual connections, gradient accumulation).</summary>
public static class AddKernel
{
    static readonly KernelLayout Layout = new([Access.ReadWrite, Access.Read], 8);

    readonly record struct Push(uint N, float Alpha);

    public static void Forward(CommandGraph g, GpuBuffer x, GpuBuffer y, int n, float alpha = 1f)
    {
        var k = g.Context.Kernel("add", Layout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), new Push((uint)n, alpha), x, y);
    }
}
