namespace VkPrompt.Runtime.Kernels;

/// <summary>Cross-entropy over a vocabulary with padding. targets is an int [rows]; −1 (any
/// negative) marks padding. A target ≥ vocab yields NaN rather than reading another row.</summary>
internal static class CrossEntropyKernel
{
    static readonly KernelLayout ForwardLayout = new([Access.Read, Access.Read, Access.Write], 8);
    static readonly KernelLayout BackwardLayout = new([Access.Read, Access.Read, Access.Write], 8);

    readonly record struct ForwardPush(uint Rows, uint Vocab);
    readonly record struct BackwardPush(uint Rows, uint Vocab);

    /// <summary>logprobs[r] = logits[r, t] − logsumexp(logits[r, :]) for t = targets[r] ≥ 0, 0 for padding.</summary>
    public static void Forward(CommandGraph g, GpuBuffer logits, GpuBuffer targets, GpuBuffer logprobs, int rows, int vocab)
    {
        Rows.CheckShape("cross_entropy", rows, vocab, nameof(vocab));
        BufferChecks.Require("cross_entropy", logits, (long)rows * vocab, "logits [rows, vocab]");
        BufferChecks.Require("cross_entropy", targets, rows, "targets [rows]");
        BufferChecks.Require("cross_entropy", logprobs, rows, "logprobs [rows]");
        int local = Rows.LocalSize(g.Context);
        var k = g.Context.Kernel("cross_entropy", ForwardLayout, local);
        g.Dispatch(k, Rows.Groups(rows), new ForwardPush((uint)rows, (uint)vocab), logits, targets, logprobs);
    }

    /// <summary>dlogits = (softmax(logits) − onehot(t)) / count, 0 on padding rows: the gradient of
    /// docs/numerics.md's loss, the mean over the batch's non-padding targets. The count is taken on the
    /// device, so a recorded training step replays for any batch without a host round trip.
    /// dlogits may be the logits buffer itself.</summary>
    public static void Backward(CommandGraph g, GpuBuffer logits, GpuBuffer targets, GpuBuffer dlogits, int rows, int vocab)
    {
        Rows.CheckShape("cross_entropy_backward", rows, vocab, nameof(vocab));
        BufferChecks.Require("cross_entropy_backward", logits, (long)rows * vocab, "logits [rows, vocab]");
        BufferChecks.Require("cross_entropy_backward", targets, rows, "targets [rows]");
        BufferChecks.Require("cross_entropy_backward", dlogits, (long)rows * vocab, "dlogits [rows, vocab]");
        int local = Rows.LocalSize(g.Context);
        var k = g.Context.Kernel("cross_entropy_backward", BackwardLayout, local);
        g.Dispatch(k, Rows.Groups(rows), new BackwardPush((uint)rows, (uint)vocab), logits, targets, dlogits);
    }

    /// <summary>docs/numerics.md's batch loss from the forward's log-probabilities: −Σ logprobs over the
    /// non-padding targets divided by their number (0 for a batch without any).</summary>
    public static double Loss(ReadOnlySpan<float> logprobs, ReadOnlySpan<int> targets)
    {
        double sum = 0;
        int count = 0;
        for (int r = 0; r < targets.Length; r++)
        {
            if (targets[r] < 0) continue;
            sum += logprobs[r];
            count++;
        }
        return count == 0 ? 0 : -sum / count;
    }
}
