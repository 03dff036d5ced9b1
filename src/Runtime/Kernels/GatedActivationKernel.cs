namespace VkPrompt.Runtime.Kernels;

/// <summary>The activation of a gated feed-forward block; the values are the shaders'
/// ACTIVATION_* constants (shaders/include/activations.glsl).</summary>
internal enum GateActivation
{
    /// <summary>gelu_tanh (T5 v1.1's "gated-gelu").</summary>
    GeluTanh = 0,
    /// <summary>x·sigmoid(x) (UL2's "gated-silu").</summary>
    Silu = 1,
}

/// <summary>The gated feed-forward activation y = act(a) * b, where a = wi_0 x and b = wi_1 x
/// and act is a <see cref="GateActivation"/>, a specialization constant of one shader pair
/// (shaders/include/activations.glsl explains the overflow-safe formulas).
/// With a <see cref="DropoutMask{TBuffer}"/> the forward drops y as it writes it and the backward
/// drops dy as it reads it, bit for bit what <see cref="DropoutKernel"/> passes after the forward
/// and before the backward would give.</summary>
internal static class GatedActivationKernel
{
    static readonly KernelLayout ForwardLayout = new([Access.Read, Access.Read, Access.Write, Access.Read], 16);
    static readonly KernelLayout BackwardLayout = new([Access.Read, Access.Read, Access.Read, Access.Write, Access.Write, Access.Read], 16);

    public static void Forward(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer y, int n, GateActivation activation, DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "gated_activation";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, a, n, "a");
        BufferChecks.Require(name, b, n, "b");
        BufferChecks.Require(name, y, n, "y");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = g.Context.Kernel(name, ForwardLayout, Grid.LinearSize, (int)activation);
        // Without dropout the seed binding holds a, which the shader then never reads through it.
        g.Dispatch(k, Grid.Linear(n), push, a, b, y, seed ?? a);
    }

    /// <summary>da = dy * b * act'(a), db = dy * act(a); with <paramref name="dropout"/> dy is
    /// the gradient of the dropped y.</summary>
    public static void Backward(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer dy, GpuBuffer da, GpuBuffer db, int n, GateActivation activation,
                                DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "gated_activation_backward";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, a, n, "a");
        BufferChecks.Require(name, b, n, "b");
        BufferChecks.Require(name, dy, n, "dy");
        BufferChecks.Require(name, da, n, "da");
        BufferChecks.Require(name, db, n, "db");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = g.Context.Kernel(name, BackwardLayout, Grid.LinearSize, (int)activation);
        g.Dispatch(k, Grid.Linear(n), push, a, b, dy, da, db, seed ?? a);
    }
}
