using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class CrossEntropyTests(GpuFixture f) : GpuTest(f)
{
    /// <summary>The covering shapes plus T5's and mT5's vocabularies.</summary>
    public static TheoryData<int, int> Shapes => RowShapes.Covering((3, 32128), (2, 250112));

    /// <summary>Logits at the scale of a real LM head, and about a quarter of the targets padding
    /// (the first target is always real, so every batch has one).</summary>
    static (float[] Logits, int[] Targets) Inputs(int rows, int vocab, int seed)
    {
        var rng = new Random(seed);
        var targets = Enumerable.Range(0, rows).Select(r => r > 0 && rng.Next(4) == 0 ? -1 : rng.Next(vocab)).ToArray();
        return (Check.Random(rows * vocab, seed, 8f), targets);
    }

    float[] RunForward(float[] logits, int[] targets, int rows, int vocab)
    {
        using var gl = GpuBuffer.From<float>(Ctx, logits);
        using var gt = GpuBuffer.From<int>(Ctx, targets);
        using var gp = new GpuBuffer(Ctx, rows * 4L);
        using (var g = new CommandGraph(Ctx))
        {
            CrossEntropyKernel.Forward(g, gl, gt, gp, rows, vocab);
            g.Run();
        }
        return gp.Download<float>();
    }

    [Theory, MemberData(nameof(Shapes))]
    public void ForwardMatchesReference(int rows, int vocab)
    {
        var (logits, targets) = Inputs(rows, vocab, rows + vocab);
        var actual = RunForward(logits, targets, rows, vocab);
        var expected = new float[rows];
        CrossEntropyReference.Forward<float>(logits, targets, expected, rows, vocab);
        // fp32 sums of up to ~4000 exponentials per invocation: ~1e-6 relative error in the sum,
        // so ~1e-6 absolute in logprobs whose size is near log(vocab).
        Check.Close(expected, actual, 1e-5, "cross-entropy");
    }

    [Theory, MemberData(nameof(Shapes))]
    public void BackwardMatchesReference(int rows, int vocab)
    {
        var (logits, targets) = Inputs(rows, vocab, 2 * rows + vocab);
        using var gl = GpuBuffer.From<float>(Ctx, logits);
        using var gt = GpuBuffer.From<int>(Ctx, targets);
        using var gd = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(float.NaN, rows * vocab).ToArray());
        using (var g = new CommandGraph(Ctx))
        {
            CrossEntropyKernel.Backward(g, gl, gt, gd, rows, vocab);
            g.Run();
        }
        var expected = new float[rows * vocab];
        CrossEntropyReference.Backward<float>(logits, targets, expected, rows, vocab);
        // Softmax probabilities with exp's few-ulp error, relative to max |ref| ≈ scale.
        Check.Close(expected, gd.Download<float>(), 1e-5, "cross-entropy backward");
    }

    [Fact]
    public void BackwardInPlaceOverTheLogits()
    {
        const int rows = 7, vocab = 300;
        var (logits, targets) = Inputs(rows, vocab, 31);
        using var gl = GpuBuffer.From<float>(Ctx, logits);
        using var gt = GpuBuffer.From<int>(Ctx, targets);
        using (var g = new CommandGraph(Ctx))
        {
            CrossEntropyKernel.Backward(g, gl, gt, gl, rows, vocab);
            g.Run();
        }
        var expected = new float[rows * vocab];
        CrossEntropyReference.Backward<float>(logits, targets, expected, rows, vocab);
        // As BackwardMatchesReference.
        Check.Close(expected, gl.Download<float>(), 1e-5, "cross-entropy backward in place");
    }

    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        const int rows = 4, vocab = 7;
        int[] targets = [3, -1, 0, 6];
        const double scale = 1.0 / 3; // three non-padding targets: the loss is their mean
        var logits = FiniteDifference.ToDouble(Check.Random(rows * vocab, 32, 3f));
        var logprobs = new double[rows];
        var fd = FiniteDifference.Gradient(logits, x =>
        {
            CrossEntropyReference.Forward<double>(x, targets, logprobs, rows, vocab);
            return -scale * logprobs.Sum();
        });
        var d = new double[rows * vocab];
        CrossEntropyReference.Backward<double>(logits, targets, d, rows, vocab);
        // Central differences in double with h = 1e-6: truncation ~h², rounding ~1e-16·|loss|/h,
        // both below 1e-9 for these order-one losses.
        Assert.True(FiniteDifference.MaxRelativeError(fd, d) <= 1e-7, "cross-entropy backward vs finite differences");
    }

    [Fact]
    public void LossMatchesHandComputation()
    {
        // Row 0: logits 1, 2, 3, target 2: log p = -log(1 + e^-1 + e^-2) = -0.40760596.
        // Row 1: logits 0, 0, 0, target 0: log p = -log 3 = -1.09861229.
        float[] logits = [1, 2, 3, 0, 0, 0];
        int[] both = [2, 0], padded = [2, -1];
        var logprobs = RunForward(logits, both, 2, 3);
        Assert.Equal(-0.40760596, logprobs[0], 6);
        Assert.Equal(-1.09861229, logprobs[1], 6);
        Assert.Equal((0.40760596 + 1.09861229) / 2, CrossEntropyKernel.Loss(logprobs, both), 6);
        // Padding neither adds to the sum nor counts in the mean.
        var paddedLogprobs = RunForward(logits, padded, 2, 3);
        Assert.Equal(0f, paddedLogprobs[1]);
        Assert.Equal(0.40760596, CrossEntropyKernel.Loss(paddedLogprobs, padded), 6);
    }

    [Fact]
    public void TargetOutsideTheVocabularyIsNaN()
    {
        const int rows = 2, vocab = 33;
        var logits = Check.Random(rows * vocab, 33);
        int[] targets = [vocab, 5];
        var logprobs = RunForward(logits, targets, rows, vocab);
        Assert.True(float.IsNaN(logprobs[0]));
        Assert.True(float.IsFinite(logprobs[1]));
    }
}
