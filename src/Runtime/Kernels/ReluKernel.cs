namespace VkPrompt.Runtime.Kernels;

/// <summary>ReLU, the T5 v1.0 feed-forward activation. With a
/// <see cref="DropoutMask{TBuffer}"/> the forward drops y as it writes it and the backward drops
/// dy as it reads it, bit for bit what <see cref="DropoutKernel"/> passes after the forward and
/// before the backward would give.</summary>
internal static class ReluKernel
{
    static readonly KernelLayout ForwardLayout = new([Access.Read, Access.Write, Access.Read], 16);
    static readonly KernelLayout BackwardLayout = new([Access.Read, Access.Read, Access.Write, Access.Read], 16);

    /// <summary>y = max(x, 0) over n floats (NaN passes through).</summary>
    public static void Forward(CommandGraph g, GpuBuffer x, GpuBuffer y, int n, DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "relu";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, x, n, "x");
        BufferChecks.Require(name, y, n, "y");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = g.Context.Kernel(name, ForwardLayout, Grid.LinearSize);
        // Without dropout the seed binding holds x, which the shader then never reads through it.
        g.Dispatch(k, Grid.Linear(n), push, x, y, seed ?? x);
    }

    /// <summary>dx = dy where x &gt; 0, else 0; with <paramref name="dropout"/> dy is the
    /// gradient of the dropped y.</summary>
    public static void Backward(CommandGraph g, GpuBuffer x, GpuBuffer dy, GpuBuffer dx, int n, DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "relu_backward";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, x, n, "x");
        BufferChecks.Require(name, dy, n, "dy");
        BufferChecks.Require(name, dx, n, "dx");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = g.Context.Kernel(name, BackwardLayout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), push, x, dy, dx, seed ?? x);
    }
}
