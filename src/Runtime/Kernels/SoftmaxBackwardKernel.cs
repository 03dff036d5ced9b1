namespace VkPrompt.Runtime.Kernels;

/// <summary>Softmax backward over rows, in place: the gradient of the probabilities dP becomes
/// the gradient of the scores dS = P ⊙ (dP − Σ_j P⊙dP). Masked keys (P = 0) get 0.</summary>
public static class SoftmaxBackwardKernel
{
    static readonly KernelLayout Layout = new([Access.Read, Access.ReadWrite], 8);

    readonly record struct Push(uint Rows, uint Length);

    public static void Backward(CommandGraph g, GpuBuffer probs, GpuBuffer grad, int rows, int length)
    {
        Rows.CheckShape("softmax_backward", rows, length, nameof(length));
        BufferChecks.Require("softmax_backward", probs, (long)rows * length, "probs [rows, length]");
        BufferChecks.Require("softmax_backward", grad, (long)rows * length, "grad [rows, length]");
        int local = Rows.LocalSize(g.Context.Capabilities);
        var k = g.Context.Kernel("softmax_backward", Layout, local);
        g.Dispatch(k, Rows.Groups(rows), new Push((uint)rows, (uint)length), probs, grad);
    }
}
