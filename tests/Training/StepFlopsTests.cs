using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>The FLOP formula of the benchmarks against the matrix products T5Pass actually
/// emits, recorded by a backend that computes nothing.</summary>
public sealed class StepFlopsTests
{
    // Every dimension distinct and inner != d_model, so a formula that swapped two would fail.
    static T5Config Config(bool gated) => ModelTestFiles.Tiny(gated) with { DModel = 20, DKv = 7, NumHeads = 3, DFf = 44, VocabSize = 53, NumLayers = 3, NumDecoderLayers = 2 };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FormulaCountsTheProductsTheStepEmits(bool gated)
    {
        using var dir = new TempDir();
        var config = Config(gated);
        RandomT5.Write(dir.Path, config, seed: 1);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        using var be = new TraceBackend { AttentionFusion = AttentionFusion.Unfused };
        using var weights = new T5Weights(ckpt, be);
        var shape = new BatchShape(Batch: 3, InputLength: 16, TargetLength: 8, PromptLength: 5);
        using var prompt = be.Floats((long)shape.PromptLength * config.DModel, "prompt");
        using var pass = new T5Pass(weights, shape, ActivationMode.Store, prompt);

        be.Record(pass.EmitForward).Dispose();
        Assert.Equal(StepFlops.Forward(config, shape), Flops(be));

        long forward = Flops(be);
        be.Record(pass.EmitBackward).Dispose();
        // VkPrompt's backward also forms the query gradient of the bottom cross-attention, which
        // no gradient of the prompt depends on and the formula leaves out: dq = dS·k and dq·Wq.
        long inner = config.InnerDim, rows = (long)shape.Batch * shape.TargetLength;
        long bottomCrossQuery = 2 * rows * shape.EncoderLength * inner + 2 * rows * config.DModel * inner;
        Assert.Equal(StepFlops.Backward(config, shape) + bottomCrossQuery, Flops(be) - forward);
        // The formula counts the unfused products; the backend is pinned to unfused, and a fused
        // attention here would make the counts meaningless.
        Assert.Equal(0, be.FusedAttentions);
    }

    static long Flops(TraceBackend be) => be.Products.Sum(p => p.Flops);

    [Fact]
    public void T5BaseStepAtTheGpuBenchmarkShapeIsAboutNineTeraflop()
    {
        // Batch 32, input 512 + prompt 100, target 8 (tools/device-bench.sh): a hand count of
        // the encoder's linear layers alone, 12 layers of 2·(32·612)·768·(4·768 + 3·2048) twice
        // (forward and backward), is 6.65e12; attention and the decoder add the rest.
        var flops = StepFlops.Total(T5Config.Named("t5-base"), new BatchShape(32, 512, 8, 100));
        Assert.InRange(flops, 7.0e12, 1.2e13);
    }
}
