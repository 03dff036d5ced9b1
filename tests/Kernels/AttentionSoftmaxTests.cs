using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class AttentionSoftmaxTests(GpuFixture f) : GpuTest(f)
{
    const int NumBuckets = 32;

    /// <summary>Scores, bucket table (a random bucket per diagonal, so a wrong index reads another),
    /// bias weights and a key mask with about a quarter of the keys off.</summary>
    internal sealed record Inputs(float[] Scores, int[] Buckets, float[] BiasWeight, int[] KeyMask)
    {
        public static Inputs Random(AttentionShape s, int seed)
        {
            var rng = new Random(seed);
            return new Inputs(
                Check.Random(checked((int)s.Elements), seed, 3f),
                Enumerable.Range(0, s.Diagonals).Select(_ => rng.Next(NumBuckets)).ToArray(),
                Check.Random(NumBuckets * s.Heads, seed + 1, 2f),
                Enumerable.Range(0, s.Batch * s.KeyLength).Select(_ => rng.Next(4) == 0 ? 0 : 1).ToArray());
        }
    }

    float[] RunGpu(AttentionShape shape, float[] scores, int[]? buckets, float[]? biasWeight, int[]? keyMask)
    {
        using var gs = GpuBuffer.From<float>(Ctx, scores);
        using var gb = buckets is null ? null : GpuBuffer.From<int>(Ctx, buckets);
        using var gw = biasWeight is null ? null : GpuBuffer.From<float>(Ctx, biasWeight);
        using var gm = keyMask is null ? null : GpuBuffer.From<int>(Ctx, keyMask);
        using (var g = new CommandGraph(Ctx))
        {
            AttentionSoftmaxKernel.Forward(g, gs, gb, gw, gm, shape);
            g.Run();
        }
        return gs.Download<float>();
    }

    float[] CompareWithReference(AttentionShape shape, Inputs input, bool bias, bool mask)
    {
        var buckets = bias ? input.Buckets : null;
        var biasWeight = bias ? input.BiasWeight : null;
        var keyMask = mask ? input.KeyMask : null;
        var actual = RunGpu(shape, input.Scores, buckets, biasWeight, keyMask);
        var expected = (float[])input.Scores.Clone();
        AttentionSoftmaxReference.Forward<float>(expected, buckets, biasWeight, keyMask, shape);
        // Probabilities are at most 1; exp's error grows with |z - max| (Vulkan allows 3 + 2|x| ulp),
        // and |z - max| stays below ~16 here: well under 1e-5.
        Check.Close(expected, actual, 1e-5, $"attention softmax {shape} bias={bias} mask={mask}");
        return actual;
    }

    [Theory]
    [InlineData(1, 1, 1, 1, true, true, true)]
    [InlineData(2, 3, 7, 33, false, false, false)]
    [InlineData(2, 3, 7, 33, true, false, false)]
    [InlineData(2, 3, 7, 33, false, true, false)]
    [InlineData(2, 3, 7, 33, false, false, true)]
    [InlineData(1, 2, 33, 129, true, true, true)]
    [InlineData(1, 1, 129, 300, true, true, false)]
    [InlineData(2, 1, 300, 7, true, false, true)]
    [InlineData(1, 2, 5, 4200, true, true, true)]    // past 16 keys per invocation: the row goes through memory
    public void ForwardMatchesReference(int batch, int heads, int queries, int keys, bool bias, bool mask, bool causal)
    {
        var shape = new AttentionShape(batch, heads, queries, keys, causal);
        CompareWithReference(shape, Inputs.Random(shape, batch * 1000 + keys), bias, mask);
    }

    /// <summary>Rows of up to 16 keys per invocation stay in registers between the passes, longer
    /// ones go through memory; the test device runs both (ForwardMatchesReference has rows of
    /// 4200 keys, more than 16 per invocation of any default workgroup).</summary>
    [Theory]
    [InlineData(612, 256, 3)]
    [InlineData(8, 256, 1)]
    [InlineData(2048, 256, 8)]
    [InlineData(4096, 256, 16)]
    [InlineData(4097, 256, 0)]
    [InlineData(612, 64, 10)]
    [InlineData(300, 64, 5)]
    public void ShortRowsStayInRegisters(int keys, int local, int cached)
    {
        Assert.Equal(cached, Rows.CachedPerInvocation(keys, local));
        Assert.Equal(0, Rows.CachedPerInvocation(4200, Rows.LocalSize(Ctx)));
    }

    [Fact]
    public void RowsBeyondTheWorkgroupLimitAreCovered()
    {
        // 70010 rows: more than the 65535 workgroups a dispatch launches, so groups take a second row.
        var shape = new AttentionShape(2, 5, 7001, 3, Causal: true);
        CompareWithReference(shape, Inputs.Random(shape, 13), bias: true, mask: true);
    }

    [Fact]
    public void BiasEntersBeforeTheSoftmax()
    {
        // Equal scores, biases 0 and ln 3 through buckets 1 and 0: probabilities 1/4 and 3/4.
        var shape = new AttentionShape(1, 1, 1, 2);
        var p = RunGpu(shape, [0.5f, 0.5f], [1, 0], [MathF.Log(3), 0], null);
        Check.Close([0.25f, 0.75f], p, 1e-6, "hand-computed bias");
    }

    [Fact]
    public void FullyMaskedRowsAreZeros()
    {
        // Batch 1 has every key masked; with QueryOffset -1 query 0 of batch 0 sees no key either.
        var shape = new AttentionShape(2, 2, 7, 33, Causal: true, QueryOffset: -1);
        var input = Inputs.Random(shape, 11);
        Array.Fill(input.KeyMask, 1, 0, 33);
        Array.Fill(input.KeyMask, 0, 33, 33);
        var p = CompareWithReference(shape, input, bias: true, mask: true);
        for (long row = 0; row < shape.Rows; row++)
        {
            bool batch1 = row >= 2 * 7, query0 = row % 7 == 0;
            double sum = p.AsSpan((int)(row * 33), 33).ToArray().Sum(v => (double)v);
            Assert.Equal(batch1 || query0 ? 0 : 1, sum, 5);
        }
    }

    const float Rate = 0.1f;
    const uint Seed = 1234, Stream = 5;

    /// <summary>The softmax on the GPU with the dropout fused, and as the softmax followed by
    /// DropoutKernel into a buffer of its own: probabilities and dropped probabilities of each.
    /// The dropped buffers start as -7s, so elements a pass leaves alone show.</summary>
    ((float[] Probs, float[] Dropped) Fused, (float[] Probs, float[] Dropped) Composed) FusedAndComposed(
        AttentionShape shape, Inputs input, bool bias, bool mask, float rate)
    {
        int n = checked((int)shape.Elements);
        using var gb = bias ? GpuBuffer.From<int>(Ctx, input.Buckets) : null;
        using var gw = bias ? GpuBuffer.From<float>(Ctx, input.BiasWeight) : null;
        using var gm = mask ? GpuBuffer.From<int>(Ctx, input.KeyMask) : null;
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var fusedProbs = GpuBuffer.From<float>(Ctx, input.Scores);
        using var fusedDropped = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(-7f, n).ToArray());
        using var probs = GpuBuffer.From<float>(Ctx, input.Scores);
        using var dropped = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(-7f, n).ToArray());
        using (var g = new CommandGraph(Ctx))
        {
            AttentionSoftmaxKernel.Forward(g, fusedProbs, gb, gw, gm, shape, new ProbsDropout<GpuBuffer>(rate, seed, Stream, fusedDropped));
            AttentionSoftmaxKernel.Forward(g, probs, gb, gw, gm, shape);
            DropoutKernel.Forward(g, probs, n, rate, seed, Stream, dropped);
            g.Run();
        }
        return ((fusedProbs.Download<float>(), fusedDropped.Download<float>()), (probs.Download<float>(), dropped.Download<float>()));
    }

    [Theory]
    [InlineData(1, 1, 1, 1, true, true, true)]
    [InlineData(2, 3, 7, 33, false, false, false)]
    [InlineData(2, 3, 7, 33, true, true, false)]
    [InlineData(1, 2, 33, 129, true, true, true)]
    [InlineData(1, 1, 129, 300, false, true, false)]
    [InlineData(2, 1, 300, 7, true, false, true)]
    [InlineData(2, 5, 7001, 3, true, true, true)]
    public void DropoutDropsWhatDropoutKernelDrops(int batch, int heads, int queries, int keys, bool bias, bool mask, bool causal)
    {
        var shape = new AttentionShape(batch, heads, queries, keys, causal);
        var input = Inputs.Random(shape, batch * 1000 + keys);
        var (fused, composed) = FusedAndComposed(shape, input, bias, mask, Rate);
        // The same softmax, the same integer mask test and one multiplication by the same float.
        Check.BitIdentical(composed.Probs, fused.Probs, $"probabilities {shape}");
        Check.BitIdentical(composed.Dropped, fused.Dropped, $"dropped probabilities {shape}");

        var probs = (float[])input.Scores.Clone();
        var dropped = new float[shape.Elements];
        AttentionSoftmaxReference.Forward<float>(probs, bias ? input.Buckets : null, bias ? input.BiasWeight : null, mask ? input.KeyMask : null, shape,
                                                 Rate, Seed, Stream, dropped);
        // As ForwardMatchesReference, scaled by at most 1 / (1 - rate); the mask itself exactly.
        Check.Close(probs, fused.Probs, 1e-5, $"probabilities {shape} vs reference");
        Check.Close(dropped, fused.Dropped, 1e-5, $"dropped probabilities {shape} vs reference");
        for (int e = 0; e < dropped.Length; e++)
            Assert.True((dropped[e] == 0) == (fused.Dropped[e] == 0), $"element {e}: the reference's mask {(dropped[e] == 0 ? "drops" : "keeps")} it");
    }

    [Fact]
    public void DropoutOfFullyMaskedRowsIsZeros()
    {
        var shape = new AttentionShape(2, 2, 7, 33, Causal: true, QueryOffset: -1);
        var input = Inputs.Random(shape, 11);
        Array.Fill(input.KeyMask, 0, 33, 33);
        var (fused, composed) = FusedAndComposed(shape, input, bias: true, mask: true, Rate);
        Check.BitIdentical(composed.Dropped, fused.Dropped, "dropped probabilities");
        Assert.All(fused.Dropped.AsSpan(2 * 7 * 33).ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void RateZeroLeavesTheDroppedBufferAlone()
    {
        var shape = new AttentionShape(2, 3, 7, 33, Causal: true);
        var input = Inputs.Random(shape, 14);
        var (fused, _) = FusedAndComposed(shape, input, bias: true, mask: true, rate: 0f);
        Check.BitIdentical(RunGpu(shape, input.Scores, input.Buckets, input.BiasWeight, input.KeyMask), fused.Probs, "probabilities at rate 0");
        Assert.All(fused.Dropped, v => Assert.Equal(-7f, v));
    }

    [Fact]
    public void CachedDecodeStepMatchesRowOfFullCausalPass()
    {
        // A KV-cached step: the query at position t against keys 0..Lk-1, Lq = 1, QueryOffset t.
        const int t = 20, keys = 33;
        var full = new AttentionShape(2, 3, keys, keys, Causal: true);
        var input = Inputs.Random(full, 12);
        var fullP = RunGpu(full, input.Scores, input.Buckets, input.BiasWeight, input.KeyMask);

        var step = full with { QueryLength = 1, QueryOffset = t };
        var stepScores = new float[step.Elements];
        for (int bh = 0; bh < 2 * 3; bh++)
            input.Scores.AsSpan((bh * keys + t) * keys, keys).CopyTo(stepScores.AsSpan(bh * keys, keys));
        // Row t of the full table: its diagonals j - t for j = 0..keys-1, the step's j - 0.
        var stepBuckets = input.Buckets.AsSpan(full.BucketIndex(t, 0), keys).ToArray();
        var stepP = RunGpu(step, stepScores, stepBuckets, input.BiasWeight, input.KeyMask);

        var expected = new float[step.Elements];
        for (int bh = 0; bh < 2 * 3; bh++)
            fullP.AsSpan((bh * keys + t) * keys, keys).CopyTo(expected.AsSpan(bh * keys, keys));
        // Same shader on a row of the same length: the same arithmetic, bit for bit.
        Check.Close(expected, stepP, 0, "decode step vs full causal row");
    }
}
