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
/// and before the backward would give.
/// a, b (the outputs of wi_0 and wi_1, kept for the backward) and y (the hidden output) may hold
/// 16-bit activations, each read or written as its storage says with fp32 arithmetic between;
/// the gradients dy, da and db stay fp32.</summary>
internal static class GatedActivationKernel
{
    // Without dropout the forward's seed binding holds a, which the shader then never reads
    // through it: it may be 16-bit as a may. The backward's holds dy, always fp32.
    static readonly StoredKernel ForwardKernel = new("gated_activation", new([Access.Read, Access.Read, Access.Write, Access.Read], 16), halfBindings: 0b1111);
    static readonly StoredKernel BackwardKernel = new("gated_activation_backward",
        new([Access.Read, Access.Read, Access.Read, Access.Write, Access.Write, Access.Read], 16), halfBindings: 0b11);

    public static void Forward(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer y, int n, GateActivation activation, DropoutMask<GpuBuffer>? dropout = null)
    {
        const string name = "gated_activation";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, a, n, "a");
        BufferChecks.Require(name, b, n, "b");
        BufferChecks.Require(name, y, n, "y");
        var (push, seed) = DropoutMasks.Push(name, dropout, n);
        var k = ForwardKernel.For(g.Context, [Grid.LinearSize, (int)activation], a, b, y);
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
        var k = BackwardKernel.For(g.Context, [Grid.LinearSize, (int)activation], a, b);
        g.Dispatch(k, Grid.Linear(n), push, a, b, dy, da, db, seed ?? dy);
    }
}
