namespace VkPrompt.Runtime.Kernels;

/// <summary>T5LayerNorm (RMSNorm) over rows of <c>dim</c> floats: y = w * x * rsqrt(mean(x²) + eps),
/// no mean subtraction, no bias. w is frozen, so the backward gives the input gradient only.
/// The forward's y, the normed input of the products that follow, may hold 16-bit activations;
/// x, the residual stream, stays fp32, and so does the backward, which reads x.</summary>
internal static class RmsNormKernel
{
    static readonly StoredKernel ForwardKernel = new("rmsnorm", new([Access.Read, Access.Read, Access.Write], 12), halfBindings: 0b100);
    static readonly KernelLayout BackwardLayout = new([Access.Read, Access.Read, Access.Read, Access.ReadWrite], 16);

    readonly record struct ForwardPush(uint Rows, uint Dim, float Eps);
    readonly record struct BackwardPush(uint Rows, uint Dim, float Eps, uint Accumulate);

    /// <summary>y[rows, dim] from x[rows, dim] and w[dim], stored as y's storage says (the
    /// statistics and products in fp32, rounded once as y is stored).</summary>
    public static void Forward(CommandGraph g, GpuBuffer x, GpuBuffer w, GpuBuffer y, int rows, int dim, float eps)
    {
        Rows.CheckShape("rmsnorm", rows, dim, nameof(dim));
        BufferChecks.Require("rmsnorm", x, (long)rows * dim, "x [rows, dim]");
        BufferChecks.Require("rmsnorm", w, dim, "w [dim]");
        BufferChecks.Require("rmsnorm", y, (long)rows * dim, "y [rows, dim]");
        int local = Rows.LocalSize(g.Context);
        var k = ForwardKernel.For(g.Context, [local], y);
        g.Dispatch(k, Rows.Groups(rows), new ForwardPush((uint)rows, (uint)dim, eps), x, w, y);
    }

    /// <summary>dx = (accumulate ? dx : 0) + (dy/dx)ᵀ dy. Accumulating adds the branch gradient to
    /// the residual stream's gradient already in dx; without it dx is only written.</summary>
    public static void Backward(CommandGraph g, GpuBuffer x, GpuBuffer w, GpuBuffer dy, GpuBuffer dx, int rows, int dim, float eps, bool accumulate)
    {
        Rows.CheckShape("rmsnorm_backward", rows, dim, nameof(dim));
        BufferChecks.Require("rmsnorm_backward", x, (long)rows * dim, "x [rows, dim]");
        BufferChecks.Require("rmsnorm_backward", w, dim, "w [dim]");
        BufferChecks.Require("rmsnorm_backward", dy, (long)rows * dim, "dy [rows, dim]");
        BufferChecks.Require("rmsnorm_backward", dx, (long)rows * dim, "dx [rows, dim]");
        int local = Rows.LocalSize(g.Context);
        var k = g.Context.Kernel("rmsnorm_backward", BackwardLayout, local);
        g.Dispatch(k, Rows.Groups(rows), new BackwardPush((uint)rows, (uint)dim, eps, accumulate ? 1u : 0u), x, w, dy, dx);
    }
}
