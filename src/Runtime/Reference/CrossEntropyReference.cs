using System.Numerics;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.CrossEntropyKernel"/>, accumulating in double.
/// Negative targets are padding; a target ≥ vocab throws (the GPU writes NaN).</summary>
internal static class CrossEntropyReference
{
    public static void Forward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, Span<T> logprobs, int rows, int vocab)
        where T : IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
        {
            int t = targets[r];
            if (t < 0)
            {
                logprobs[r] = T.Zero;
                continue;
            }
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(t, vocab, nameof(targets));
            var row = logits.Slice(r * vocab, vocab);
            var (max, sum) = MaxAndSumExp(row);
            logprobs[r] = T.CreateTruncating(double.CreateTruncating(row[t]) - max - Math.Log(sum));
        }
    }

    /// <summary>Gradient of the mean loss over the non-padding targets (docs/numerics.md):
    /// dlogits = (softmax − onehot(t)) / count for real targets, 0 for padding.</summary>
    public static void Backward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, Span<T> dlogits, int rows, int vocab)
        where T : IFloatingPointIeee754<T>
    {
        int count = 0;
        for (int r = 0; r < rows; r++) if (targets[r] >= 0) count++;
        double scale = count == 0 ? 0 : 1.0 / count;
        for (int r = 0; r < rows; r++)
        {
            int t = targets[r];
            var d = dlogits.Slice(r * vocab, vocab);
            if (t < 0)
            {
                d.Clear();
                continue;
            }
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(t, vocab, nameof(targets));
            var row = logits.Slice(r * vocab, vocab);
            var (max, sum) = MaxAndSumExp(row);
            for (int j = 0; j < vocab; j++)
            {
                double p = Math.Exp(double.CreateTruncating(row[j]) - max) / sum;
                d[j] = T.CreateTruncating(scale * (j == t ? p - 1 : p));
            }
        }
    }

    static (double Max, double SumExp) MaxAndSumExp<T>(ReadOnlySpan<T> row) where T : IFloatingPointIeee754<T>
    {
        double max = double.NegativeInfinity, sum = 0;
        foreach (var v in row) max = Math.Max(max, double.CreateTruncating(v));
        foreach (var v in row) sum += Math.Exp(double.CreateTruncating(v) - max);
        return (max, sum);
    }
}
