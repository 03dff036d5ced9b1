using System.Numerics;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="FusedAttentionKernel"/>, written out in double one query
/// at a time: the whole row of scores, its softmax, dropout with <see cref="DropoutReference"/>'s
/// mask, then the products. An empty span stands for an absent input (the dispatch's null);
/// buckets and biasWeight come together.</summary>
internal static class FusedAttentionReference
{
    public static void Forward<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, Span<T> o, Span<T> logSumExp,
                                  ReadOnlySpan<int> buckets, ReadOnlySpan<T> biasWeight, ReadOnlySpan<int> keyMask, FusedAttentionShape shape,
                                  float dropoutRate = 0f, uint seed = 0, uint stream = 0)
        where T : IFloatingPointIeee754<T>
    {
        var s = shape.Scores;
        int dkv = shape.DKv;
        var dropout = new Dropout(dropoutRate, seed, stream, s);
        var z = new double[s.KeyLength];
        var acc = new double[dkv];
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.Heads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        {
            int qAt = RowBase(shape, b, shape.QueryRows, i, h);
            double max = double.NegativeInfinity;
            for (int j = 0; j < s.KeyLength; j++)
            {
                z[j] = Score(q, k, buckets, biasWeight, keyMask, shape, b, h, i, j);
                max = Math.Max(max, z[j]);
            }
            Array.Clear(acc);
            double sum = 0;
            if (!double.IsNegativeInfinity(max))
            {
                for (int j = 0; j < s.KeyLength; j++) sum += z[j] = Math.Exp(z[j] - max);
                for (int j = 0; j < s.KeyLength; j++)
                {
                    double p = dropout.Apply(z[j] / sum, b, h, i, j);
                    int vAt = RowBase(shape, b, shape.KeyRows, j, h);
                    for (int d = 0; d < dkv; d++) acc[d] += p * double.CreateTruncating(v[vAt + d]);
                }
            }
            for (int d = 0; d < dkv; d++) o[qAt + d] = T.CreateTruncating(acc[d]);
            logSumExp[(b * s.Heads + h) * s.QueryLength + i] = T.CreateTruncating(double.IsNegativeInfinity(max) ? double.PositiveInfinity : max + Math.Log(sum));
        }
    }

    /// <summary>dq, dk, dv given dO, with P = exp(score - logSumExp) and Δ = dO·o per query, as
    /// the kernel computes them. Rows past QueryLength / KeyLength are left as they are.</summary>
    public static void Backward<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<T> o, ReadOnlySpan<T> logSumExp, ReadOnlySpan<T> dO,
                                   Span<T> dq, Span<T> dk, Span<T> dv, ReadOnlySpan<int> buckets, ReadOnlySpan<T> biasWeight, ReadOnlySpan<int> keyMask,
                                   FusedAttentionShape shape, float dropoutRate = 0f, uint seed = 0, uint stream = 0)
        where T : IFloatingPointIeee754<T>
    {
        var s = shape.Scores;
        int dkv = shape.DKv;
        var dropout = new Dropout(dropoutRate, seed, stream, s);
        int keyRow = s.Heads * dkv;
        // dk and dv gather over every query, so they are summed in double and stored at the end.
        var dkSum = new double[(long)s.Batch * s.KeyLength * keyRow];
        var dvSum = new double[dkSum.Length];
        var dqi = new double[dkv];
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.Heads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        {
            int qAt = RowBase(shape, b, shape.QueryRows, i, h);
            double delta = 0;
            for (int d = 0; d < dkv; d++) delta += double.CreateTruncating(dO[qAt + d]) * double.CreateTruncating(o[qAt + d]);
            double lse = double.CreateTruncating(logSumExp[(b * s.Heads + h) * s.QueryLength + i]);
            Array.Clear(dqi);
            for (int j = 0; j < s.KeyLength; j++)
            {
                double p = Math.Exp(Score(q, k, buckets, biasWeight, keyMask, shape, b, h, i, j) - lse);
                if (p == 0) continue;
                int kAt = RowBase(shape, b, shape.KeyRows, j, h);
                long sumAt = ((long)b * s.KeyLength + j) * keyRow + h * dkv;
                double dp = 0;
                for (int d = 0; d < dkv; d++) dp += double.CreateTruncating(dO[qAt + d]) * double.CreateTruncating(v[kAt + d]);
                // The gradient of the undropped P passes through the same mask and scale.
                double ds = p * (dropout.Apply(dp, b, h, i, j) - delta);
                double pd = dropout.Apply(p, b, h, i, j);
                for (int d = 0; d < dkv; d++)
                {
                    dqi[d] += ds * double.CreateTruncating(k[kAt + d]);
                    dkSum[sumAt + d] += ds * double.CreateTruncating(q[qAt + d]);
                    dvSum[sumAt + d] += pd * double.CreateTruncating(dO[qAt + d]);
                }
            }
            for (int d = 0; d < dkv; d++) dq[qAt + d] = T.CreateTruncating(dqi[d]);
        }
        for (int b = 0; b < s.Batch; b++)
        for (int j = 0; j < s.KeyLength; j++)
        {
            int at = RowBase(shape, b, shape.KeyRows, j, 0);
            long sumAt = ((long)b * s.KeyLength + j) * keyRow;
            for (int c = 0; c < keyRow; c++)
            {
                dk[at + c] = T.CreateTruncating(dkSum[sumAt + c]);
                dv[at + c] = T.CreateTruncating(dvSum[sumAt + c]);
            }
        }
    }

    static int RowBase(in FusedAttentionShape shape, int b, int rows, int pos, int h) =>
        ((b * rows + pos) * shape.Scores.Heads + h) * shape.DKv;

    /// <summary>q[i]·k[j] + bias, or -inf for a masked key.</summary>
    static double Score<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<int> buckets, ReadOnlySpan<T> biasWeight, ReadOnlySpan<int> keyMask,
                           in FusedAttentionShape shape, int b, int h, int i, int j)
        where T : IFloatingPointIeee754<T>
    {
        var s = shape.Scores;
        if ((s.Causal && j > i + s.QueryOffset) || (!keyMask.IsEmpty && keyMask[b * s.KeyLength + j] == 0))
            return double.NegativeInfinity;
        int qAt = RowBase(shape, b, shape.QueryRows, i, h), kAt = RowBase(shape, b, shape.KeyRows, j, h);
        double dot = 0;
        for (int d = 0; d < shape.DKv; d++) dot += double.CreateTruncating(q[qAt + d]) * double.CreateTruncating(k[kAt + d]);
        return buckets.IsEmpty ? dot : dot + double.CreateTruncating(biasWeight[buckets[s.BucketIndex(i, j)] * s.Heads + h]);
    }

    /// <summary>Dropout of probability (b, h, i, j): DropoutReference's mask over the
    /// [B, H, Lq, Lk] probabilities and its float scale.</summary>
    readonly struct Dropout(float rate, uint seed, uint stream, AttentionShape shape)
    {
        readonly uint threshold = DropoutKernel.KeepThreshold(rate);
        readonly double scale = DropoutKernel.KeepScale(rate);

        public double Apply(double x, int b, int h, int i, int j)
        {
            if (threshold == 0) return x;
            uint index = (uint)((((long)b * shape.Heads + h) * shape.QueryLength + i) * shape.KeyLength + j);
            return DropoutReference.Keep(index, threshold, seed, stream) ? x * scale : 0;
        }
    }
}
