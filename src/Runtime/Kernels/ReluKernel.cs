namespace VkPrompt.Runtime.Kernels;

/// <summary>ReLU, the T5 v1.0 feed-forward activation. With a
/// <see cref="DropoutMask{TBuffer}"/> the forward drops y as it writes it and the backward drops
/// dy as it reads it, bit for bit what <see cref="DropoutKernel"/> passes after the forward and
/// before the backward would give. The forward's x and y and the backward's x may hold 16-bit
/// activations, each read or written as its storage says; dy and dx stay fp32.</summary>
internal static class ReluKernel
{
    // Without dropout the forward's seed binding holds x, which the shader then never reads
    // through it: it may be 16-bit as x may. The backward's holds dy, always fp32.
    static readonly StoredKernel ForwardKernel = new("relu", new([Access.Read, Access.Write, Access.Read], 16), halfBindings: 0b111);
    static readonly StoredKernel BackwardKernel = new("relu_backward", new([Access.Read, Access.Read, Access.Write, Access.Read], 16), halfBindings: 0b1);

    /// <summary>y = max(x, 0) over n floats (NaN passes through).</summary>
    public static void Forward(CommandGraph g, GpuBuffer x, GpuBuffer y, int n, DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "relu";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, x, n, "x");
        BufferChecks.Require(name, y, n, "y");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = ForwardKernel.For(g.Context, [Grid.LinearSize], x, y);
        g.Dispatch(k, Grid.Linear(n), push, x, y, seed ?? x);
    }

    /// <summary>dx = dy where x &gt; 0, else 0; with <paramref name="dropout"/> dy is the
    /// gradient of the dropped y. <paramref name="x"/> may be the forward's input or its output
    /// y, dropped or not (what T5Pass keeps, <see cref="MatMulEpilogue.Relu"/>): y &gt; 0 exactly
    /// where x &gt; 0 and the mask kept the element, and where it dropped it dy's mask makes dx 0
    /// either way.</summary>
    public static void Backward(CommandGraph g, GpuBuffer x, GpuBuffer dy, GpuBuffer dx, int n, DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "relu_backward";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, x, n, "x");
        BufferChecks.Require(name, dy, n, "dy");
        BufferChecks.Require(name, dx, n, "dx");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = BackwardKernel.For(g.Context, [Grid.LinearSize], x);
        g.Dispatch(k, Grid.Linear(n), push, x, dy, dx, seed ?? dy);
    }
}
