namespace VkPrompt.Runtime.Kernels;

/// <summary>Softmax backward over rows, in place: the gradient of the probabilities dP becomes
/// the gradient of the scores dS = P ⊙ (dP − Σ_j P⊙dP). Masked keys (P = 0) get 0.
/// With a dropout, the forward's dropout on the probabilities: grad is the
/// gradient of the dropped probabilities and passes through the mask as it is read, and the
/// dropped probabilities are rebuilt from the probabilities in the same pass. Both are
/// bit for bit what <see cref="DropoutKernel"/> passes before and after would give.</summary>
internal static class SoftmaxBackwardKernel
{
    static readonly KernelLayout Layout = new([Access.Read, Access.ReadWrite, Access.Read, Access.Write], 20);

    readonly record struct Push(uint Rows, uint Length, uint Threshold, float Scale, uint Stream);

    public static void Backward(CommandGraph g, GpuBuffer probs, GpuBuffer grad, int rows, int length, ProbsDropout<GpuBuffer>? dropout = null)
    {
        const string name = "softmax_backward";
        Rows.CheckShape(name, rows, length, nameof(length));
        BufferChecks.Require(name, probs, (long)rows * length, "probs [rows, length]");
        BufferChecks.Require(name, grad, (long)rows * length, "grad [rows, length]");
        var (threshold, scale, seed, dropped) = ProbsDropouts.Check(name, dropout, (long)rows * length, probs, grad);
        var (local, cache, subgroupRows, groups) = Rows.Shape(g.Context, rows, length);
        var k = g.Context.Kernel(name, Layout, local, cache, subgroupRows);
        // Without dropout the seed and output bindings hold grad, which the shader then never
        // touches through them and which is written anyway (a stand-in probs would count as written).
        g.Dispatch(k, groups, new Push((uint)rows, (uint)length, threshold, scale, dropout?.Stream ?? 0), probs, grad, seed ?? grad, dropped ?? grad);
    }
}
