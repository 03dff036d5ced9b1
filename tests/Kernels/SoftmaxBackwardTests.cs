using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class SoftmaxBackwardTests(GpuFixture f) : GpuTest(f)
{
    // 4200: past 16 elements per invocation of any device's default row workgroup, so the row
    // goes through memory between the passes; the covering sizes stay in registers.
    public static TheoryData<int, int> Shapes => RowShapes.Covering((3, 4200));

    [Theory, MemberData(nameof(Shapes))]
    public void MatchesReference(int rows, int length)
    {
        // Real probabilities with some keys masked (P = 0), as the attention forward leaves them;
        // one query per batch entry gives every row its own mask.
        var shape = new AttentionShape(rows, 1, 1, length);
        var input = AttentionSoftmaxTests.Inputs.Random(shape, 21);
        var p = input.Scores;
        AttentionSoftmaxReference.Forward<float>(p, [], [], input.KeyMask, shape);
        var grad = Check.Random(rows * length, 22);
        using var gp = GpuBuffer.From<float>(Ctx, p);
        using var gg = GpuBuffer.From<float>(Ctx, grad);
        using (var g = new CommandGraph(Ctx))
        {
            SoftmaxBackwardKernel.Backward(g, gp, gg, rows, length);
            g.Run();
        }
        SoftmaxBackwardReference.Backward<float>(p, grad, rows, length);
        // One fp32 dot product of at most 300 terms, then one product per element.
        Check.Close(grad, gg.Download<float>(), 1e-5, "softmax backward");
    }

    const float Rate = 0.1f;
    const uint Seed = 99, Stream = 3;

    /// <summary>Every covering row shape as rows of one query each (so every row has its own key
    /// mask), and causal multi-head attentions with masked keys.</summary>
    public static TheoryData<int, int, int, int, bool> DropoutShapes()
    {
        var data = new TheoryData<int, int, int, int, bool>();
        foreach (var (rows, cols) in RowShapes.CoveringPairs()) data.Add(rows, 1, 1, cols, false);
        data.Add(2, 3, 33, 33, true);
        data.Add(1, 2, 129, 129, true);
        data.Add(1, 1, 3, 4200, false);
        return data;
    }

    /// <summary>Probabilities as the attention forward leaves them (masked keys 0) and a gradient.</summary>
    static (float[] Probs, float[] Grad) ProbsAndGrad(AttentionShape shape, int seed)
    {
        var input = AttentionSoftmaxTests.Inputs.Random(shape, seed);
        AttentionSoftmaxReference.Forward<float>(input.Scores, input.Buckets, input.BiasWeight, input.KeyMask, shape);
        return (input.Scores, Check.Random((int)shape.Elements, seed + 1));
    }

    /// <summary>The backward on the GPU with the dropout fused, and as DropoutKernel on the
    /// gradient, the plain backward and DropoutKernel from the probabilities into a buffer of
    /// their own: the score gradient and dropped probabilities of each. The dropped buffers
    /// start as -7s, so elements a pass leaves alone show.</summary>
    ((float[] Grad, float[] Dropped) Fused, (float[] Grad, float[] Dropped) Composed) FusedAndComposed(
        float[] probs, float[] grad, int rows, int length, float rate)
    {
        int n = rows * length;
        using var gp = GpuBuffer.From<float>(Ctx, probs);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var fusedGrad = GpuBuffer.From<float>(Ctx, grad);
        using var fusedDropped = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(-7f, n).ToArray());
        using var composedGrad = GpuBuffer.From<float>(Ctx, grad);
        using var composedDropped = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(-7f, n).ToArray());
        using (var g = new CommandGraph(Ctx))
        {
            SoftmaxBackwardKernel.Backward(g, gp, fusedGrad, rows, length, new ProbsDropout<GpuBuffer>(rate, seed, Stream, fusedDropped));
            DropoutKernel.Backward(g, composedGrad, n, rate, seed, Stream);
            SoftmaxBackwardKernel.Backward(g, gp, composedGrad, rows, length);
            DropoutKernel.Forward(g, gp, n, rate, seed, Stream, composedDropped);
            g.Run();
        }
        return ((fusedGrad.Download<float>(), fusedDropped.Download<float>()), (composedGrad.Download<float>(), composedDropped.Download<float>()));
    }

    [Theory, MemberData(nameof(DropoutShapes))]
    public void DropoutIsDropoutKernelsMaskBothWays(int batch, int heads, int queries, int keys, bool causal)
    {
        var shape = new AttentionShape(batch, heads, queries, keys, causal);
        int rows = (int)shape.Rows;
        var (probs, grad) = ProbsAndGrad(shape, 25 + keys);
        var (fused, composed) = FusedAndComposed(probs, grad, rows, keys, Rate);
        // The same mask and products, the row's dot product summed in the same order.
        Check.BitIdentical(composed.Grad, fused.Grad, $"score gradient {shape}");
        Check.BitIdentical(composed.Dropped, fused.Dropped, $"dropped probabilities {shape}");

        var dropped = new float[shape.Elements];
        SoftmaxBackwardReference.Backward<float>(probs, grad, rows, keys, Rate, Seed, Stream, dropped);
        // As MatchesReference; the dropped probabilities are one float product of the same inputs.
        Check.Close(grad, fused.Grad, 1e-5, $"score gradient {shape} vs reference");
        Check.BitIdentical(dropped, fused.Dropped, $"dropped probabilities {shape} vs reference");
    }

    [Fact]
    public void RateZeroIsThePlainBackwardAndLeavesTheDroppedBufferAlone()
    {
        var shape = new AttentionShape(2, 3, 33, 33, Causal: true);
        var (probs, grad) = ProbsAndGrad(shape, 26);
        var (fused, composed) = FusedAndComposed(probs, grad, (int)shape.Rows, shape.KeyLength, rate: 0f);
        Check.BitIdentical(composed.Grad, fused.Grad, "score gradient at rate 0");
        Assert.All(fused.Dropped, v => Assert.Equal(-7f, v));
    }

    [Fact]
    public void DroppedProbabilitiesNeedABufferOfTheirOwn()
    {
        using var p = new GpuBuffer(Ctx, 7 * 4);
        using var grad = new GpuBuffer(Ctx, 7 * 4);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var g = new CommandGraph(Ctx);
        foreach (var alias in new[] { p, grad })
            Assert.Throws<ArgumentException>(() => SoftmaxBackwardKernel.Backward(g, p, grad, 1, 7, new ProbsDropout<GpuBuffer>(Rate, seed, Stream, alias)));
    }

    [Fact]
    public void ReferenceWithDropoutMatchesFiniteDifferencesOfAttentionForward()
    {
        // The loss reads the dropped probabilities, as P·V does in a training step.
        var shape = new AttentionShape(2, 2, 3, 7, Causal: true);
        var input = AttentionSoftmaxTests.Inputs.Random(shape, 27);
        var s = FiniteDifference.ToDouble(input.Scores);
        var bias = FiniteDifference.ToDouble(input.BiasWeight);
        var dDropped = FiniteDifference.ToDouble(Check.Random((int)shape.Elements, 28));
        var p = new double[s.Length];
        var dropped = new double[s.Length];
        var fd = FiniteDifference.Gradient(s, xs =>
        {
            xs.CopyTo(p, 0);
            AttentionSoftmaxReference.Forward<double>(p, input.Buckets, bias, input.KeyMask, shape, Rate, Seed, Stream, dropped);
            return FiniteDifference.Dot(dropped, dDropped);
        });

        s.CopyTo(p, 0);
        AttentionSoftmaxReference.Forward<double>(p, input.Buckets, bias, input.KeyMask, shape);
        var ds = (double[])dDropped.Clone();
        SoftmaxBackwardReference.Backward<double>(p, ds, (int)shape.Rows, shape.KeyLength, Rate, Seed, Stream, new double[s.Length]);
        Assert.Contains(Enumerable.Range(0, s.Length), e => p[e] != 0 && dropped[e] == 0);  // the mask drops a visible key
        // As without dropout: central differences in double, errors below 1e-9.
        Assert.True(FiniteDifference.MaxRelativeError(fd, ds) <= 1e-7, "softmax backward with dropout vs finite differences");
    }

    [Fact]
    public void ReferenceMatchesFiniteDifferencesOfAttentionForward()
    {
        // Bias, key mask and causality together, so masked scores must get a zero gradient too.
        var shape = new AttentionShape(2, 2, 3, 7, Causal: true);
        var input = AttentionSoftmaxTests.Inputs.Random(shape, 23);
        var s = FiniteDifference.ToDouble(input.Scores);
        var bias = FiniteDifference.ToDouble(input.BiasWeight);
        var dp = FiniteDifference.ToDouble(Check.Random((int)shape.Elements, 24));
        var p = new double[s.Length];
        var fd = FiniteDifference.Gradient(s, xs =>
        {
            xs.CopyTo(p, 0);
            AttentionSoftmaxReference.Forward<double>(p, input.Buckets, bias, input.KeyMask, shape);
            return FiniteDifference.Dot(p, dp);
        });

        s.CopyTo(p, 0);
        AttentionSoftmaxReference.Forward<double>(p, input.Buckets, bias, input.KeyMask, shape);
        var ds = (double[])dp.Clone();
        SoftmaxBackwardReference.Backward<double>(p, ds, (int)shape.Rows, shape.KeyLength);
        // Central differences in double with h = 1e-6: truncation ~h², rounding ~1e-16·|loss|/h,
        // both below 1e-9 for these order-one losses.
        Assert.True(FiniteDifference.MaxRelativeError(fd, ds) <= 1e-7, "softmax backward vs finite differences");
    }
}
