using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>StepProducts, the list `vkprompt bench matmul` times, against the products T5Pass
/// actually emits in a training step, recorded by a backend that computes nothing: the same specs
/// (strides, transposes, alpha, accumulation), the same kind and precision of B, as often.</summary>
public sealed class StepProductsTests
{
    // Every dimension distinct and inner != d_model, so a spec with two sizes swapped would not match.
    static T5Config Config(bool gated, bool tied) =>
        ModelTestFiles.Tiny(gated) with { DModel = 20, DKv = 7, NumHeads = 3, DFf = 44, VocabSize = 53, NumLayers = 3, NumDecoderLayers = 2, TieWordEmbeddings = tied };

    [Theory]
    [InlineData(false, true, 0.1f, AttentionFusion.Never, WeightPrecision.Fp32)]
    [InlineData(true, false, 0.1f, AttentionFusion.Never, WeightPrecision.Bf16)]
    [InlineData(true, false, 0f, AttentionFusion.Never, WeightPrecision.Fp16)]
    [InlineData(false, true, 0f, AttentionFusion.Always, WeightPrecision.Bf16)]
    [InlineData(true, false, 0.1f, AttentionFusion.Always, WeightPrecision.Fp32)]
    public void ListsExactlyTheProductsTheStepEmits(bool gated, bool tied, float dropout, AttentionFusion fusion, WeightPrecision precision)
    {
        using var dir = new TempDir();
        var config = Config(gated, tied);
        RandomT5.Write(dir.Path, config, seed: 1);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        using var be = new RecordingBackend { AttentionFusion = fusion };
        using var weights = new T5Weights(ckpt, be, precision);
        var shape = new BatchShape(Batch: 3, InputLength: 16, TargetLength: 8, PromptLength: 5);
        using var prompt = be.Floats((long)shape.PromptLength * config.DModel, "prompt");
        using var pass = new T5Pass(weights, shape, ActivationMode.Store, prompt, dropout);
        be.Record(() => { pass.EmitForward(); pass.EmitBackward(); }).Dispose();

        var listed = StepProducts.For(config, shape, dropout, be.FusesAttention);
        // Each recorded product as the list describes it, and how often.
        var emitted = be.Products
            .GroupBy(p => (p.Spec, WeightB: p.Weight is not null))
            .ToDictionary(g => g.Key, g => g.Count());
        var expected = listed.ToDictionary(p => (p.Spec, p.WeightB), p => p.Count);
        Assert.Equal(expected.Count, listed.Count);  // merged: no two entries share a spec and kind of B
        foreach (var (key, count) in emitted)
            Assert.True(expected.TryGetValue(key, out int n) && n == count,
                $"T5Pass emits {count} x {Describe(key.Spec)} (B {(key.WeightB ? "weight" : "activation")}); the list has {(expected.TryGetValue(key, out int m) ? m : 0)}");
        foreach (var (key, count) in expected)
            Assert.True(emitted.ContainsKey(key), $"the list has {count} x {Describe(key.Spec)} that T5Pass never emits");
        // Weights are read in the model's precision, every other B is an fp32 activation.
        Assert.All(be.Products.Where(p => p.Weight is not null), p => Assert.Equal(precision, p.Weight));
        Assert.Equal(be.Products.Count, listed.Sum(p => p.Count));
        if (fusion == AttentionFusion.Always)
            Assert.All(listed, p => Assert.True(p.WeightB));
    }

    [Fact]
    public void ItsFlopsAreTheStepsCountPlusTheBottomCrossQuery()
    {
        var config = T5Config.Named("t5-base");
        var shape = new BatchShape(32, 512, 8, 100);
        var products = StepProducts.For(config, shape, 0.1f, _ => false);
        long rows = (long)shape.Batch * shape.TargetLength, inner = config.InnerDim;
        long bottomCrossQuery = 2 * rows * shape.EncoderLength * inner + 2 * rows * config.DModel * inner;
        Assert.Equal(StepFlops.Total(config, shape) + bottomCrossQuery, products.Sum(p => p.Count * p.Flops));
    }

    /// <summary>The trainer offers the backend a step's products to tune (MatMulTuner on a GPU)
    /// before it records the step, once per batch shape: exactly the products the step then
    /// emits, each with the precision its B is read in.</summary>
    [Fact]
    public void TheTrainerOffersTheStepsProductsForTuningBeforeRecordingIt()
    {
        using var dir = new TempDir();
        var config = Config(gated: true, tied: false);
        RandomT5.Write(dir.Path, config, seed: 1);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        using var be = new RecordingBackend { AttentionFusion = AttentionFusion.Never };
        using var weights = new T5Weights(ckpt, be, WeightPrecision.Bf16);
        using var trainer = new PromptTrainer(weights, new float[5 * config.DModel], new AdafactorSettings(), dropout: 0.1f, seed: 0);
        var examples = new[] { new EncodedExample([3, 4, 5, 1], [6, 1]), new EncodedExample([7, 1], [8, 9, 1]) };
        trainer.TrainStep(examples, 2);
        trainer.TrainStep(examples, 2);

        var (offered, recordedBefore) = Assert.Single(be.Tunings);
        Assert.Equal(0, recordedBefore);
        var emitted = be.Products.Select(p => (p.Spec, p.Weight ?? WeightPrecision.Fp32)).Distinct().ToList();
        Assert.Equal(offered.Count, offered.Distinct().Count());
        Assert.Equal(emitted.ToHashSet(), offered.ToHashSet());
    }

    static string Describe(MatMulSpec s) => $"{s.M}x{s.N}x{s.K} batch {s.Batch1}x{s.Batch2} (A strides {s.AStrideM},{s.AStrideK}; B strides {s.BStrideK},{s.BStrideN}; alpha {s.Alpha}; accumulate {s.Accumulate})";
}
