using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

public sealed class SoftmaxBackwardTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int, int> Shapes => RowShapes.Covering();

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
