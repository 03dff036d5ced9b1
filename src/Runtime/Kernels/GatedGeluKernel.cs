namespace VkPrompt.Runtime.Kernels;

/// <summary>The T5 v1.1 gated feed-forward activation y = gelu_tanh(a) * b, where a = wi_0 x
/// and b = wi_1 x (shaders/include/activations.glsl explains the overflow-safe formula).</summary>
public static class GatedGeluKernel
{
    static readonly KernelLayout ForwardLayout = new([Access.Read, Access.Read, Access.Write], 4);
    static readonly KernelLayout BackwardLayout = new([Access.Read, Access.Read, Access.Read, Access.Write, Access.Write], 4);

    readonly record struct Push(uint N);

    public static void Forward(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer y, int n)
    {
        BufferChecks.NonNegative("gated_gelu", (n, nameof(n)));
        BufferChecks.Require("gated_gelu", a, n, "a");
        BufferChecks.Require("gated_gelu", b, n, "b");
        BufferChecks.Require("gated_gelu", y, n, "y");
        var k = g.Context.Kernel("gated_gelu", ForwardLayout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), new Push((uint)n), a, b, y);
    }

    /// <summary>da = dy * b * gelu_tanh'(a), db = dy * gelu_tanh(a).</summary>
    public static void Backward(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer dy, GpuBuffer da, GpuBuffer db, int n)
    {
        const string name = "gated_gelu_backward";
        BufferChecks.NonNegative(name, (n, nameof(n)));
        BufferChecks.Require(name, a, n, "a");
        BufferChecks.Require(name, b, n, "b");
        BufferChecks.Require(name, dy, n, "dy");
        BufferChecks.Require(name, da, n, "da");
        BufferChecks.Require(name, db, n, "db");
        var k = g.Context.Kernel(name, BackwardLayout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(n), new Push((uint)n), a, b, dy, da, db);
    }
}
