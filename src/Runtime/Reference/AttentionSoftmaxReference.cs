using System.Numerics;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="AttentionSoftmaxKernel"/>, in double. An empty span stands
/// for an absent input (the dispatch's null); buckets and biasWeight come together. A non-empty
/// dropped span with a rate above 0 gets the probabilities through
/// <see cref="DropoutReference"/>'s mask, as the dispatch's <see cref="ProbsDropout{TBuffer}"/>.</summary>
internal static class AttentionSoftmaxReference
{
    public static void Forward<T>(Span<T> scores, ReadOnlySpan<int> buckets, ReadOnlySpan<T> biasWeight, ReadOnlySpan<int> keyMask, AttentionShape shape,
                                  float dropoutRate = 0f, uint seed = 0, uint stream = 0, Span<T> dropped = default)
        where T : IFloatingPointIeee754<T>
    {
        int lq = shape.QueryLength, lk = shape.KeyLength, heads = shape.Heads;
        bool bias = !buckets.IsEmpty;
        var z = new double[lk];
        for (long row = 0; row < shape.Rows; row++)
        {
            int i = (int)(row % lq), h = (int)(row / lq % heads), b = (int)(row / ((long)lq * heads));
            var s = scores.Slice((int)(row * lk), lk);
            double max = double.NegativeInfinity;
            for (int j = 0; j < lk; j++)
            {
                bool masked = (shape.Causal && j > i + shape.QueryOffset) || (!keyMask.IsEmpty && keyMask[b * lk + j] == 0);
                z[j] = masked ? double.NegativeInfinity
                     : double.CreateTruncating(s[j]) + (bias ? double.CreateTruncating(biasWeight[buckets[shape.BucketIndex(i, j)] * heads + h]) : 0);
                max = Math.Max(max, z[j]);
            }
            if (double.IsNegativeInfinity(max))
            {
                s.Clear();
                continue;
            }
            double sum = 0;
            for (int j = 0; j < lk; j++) sum += z[j] = Math.Exp(z[j] - max);
            for (int j = 0; j < lk; j++) s[j] = T.CreateTruncating(z[j] / sum);
        }
        if (dropped.IsEmpty || DropoutKernel.KeepThreshold(dropoutRate) == 0) return;
        int n = (int)shape.Elements;
        scores[..n].CopyTo(dropped);
        DropoutReference.Forward(dropped, n, dropoutRate, seed, stream);
    }
}
