namespace VkPrompt.Runtime.Kernels;

/// <summary>ReLU, the T5 v1.0 feed-forward activation.</summary>
public static class ReluKernel
{
    static readonly KernelLayout ForwardLayout = new([Access.Read, Access.Write], 4);
    static readonly KernelLayout BackwardLayout = new([Access.Read, Access.Read, Access.Write], 4);

    readonly record struct Push(uint N);

    /// <summary>y = max(x, 0) over n floats (NaN passes through).</summary>
    public static void Forward(CommandGraph g, GpuBuffer x, GpuBuffer y, int n)
    {
        BufferChecks.NonNegative("relu", (n, nameof(n)));
        BufferChecks.Require("relu", x, n, "x");
        BufferChecks.Require("relu", y, n, "y");
        var k = g.Context.Kernel("relu", ForwardLayout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), new Push((uint)n), x, y);
    }

    /// <summary>dx = dy where x &gt; 0, else 0.</summary>
    public static void Backward(CommandGraph g, GpuBuffer x, GpuBuffer dy, GpuBuffer dx, int n)
    {
        BufferChecks.NonNegative("relu_backward", (n, nameof(n)));
        BufferChecks.Require("relu_backward", x, n, "x");
        BufferChecks.Require("relu_backward", dy, n, "dy");
        BufferChecks.Require("relu_backward", dx, n, "dx");
        var k = g.Context.Kernel("relu_backward", BackwardLayout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), new Push((uint)n), x, dy, dx);
    }
}
