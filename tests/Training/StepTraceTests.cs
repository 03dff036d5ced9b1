using VkPrompt.Diagnostics;
using VkPrompt.Cli.Commands;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>The trace of a training step (<see cref="T5Pass.Trace"/>) against the products the
/// trainer's step actually emits, recorded by a backend that computes nothing: the tuner is
/// offered exactly them, and `vkprompt bench matmul` lists every one of them as often (the same
/// specs: strides, transposes, alpha, accumulation; the same kind and precision of B), for T5
/// v1.0 (ReLU, tied LM head) and v1.1 (gated-GELU, untied) shapes, fused and unfused.</summary>
public sealed class StepTraceTests
{
    // Every dimension distinct and inner != d_model, so a spec with two sizes swapped would not match.
    static T5Config Config(bool gated, bool tied, float dropout) =>
        ModelTestFiles.Tiny(gated) with
        {
            DModel = 20, DKv = 7, NumHeads = 3, DFf = 44, VocabSize = 53, NumLayers = 3, NumDecoderLayers = 2, TieWordEmbeddings = tied, DropoutRate = dropout,
        };

    /// <summary>A trace backend that also keeps each offer of products to tune, with how many
    /// products had been emitted by then.</summary>
    sealed class TuningRecorder : TraceBackend
    {
        public readonly List<(IReadOnlyList<TracedProduct> Products, int EmittedBefore)> Tunings = new();

        internal override bool TunesMatMul => true;
        internal override void TuneMatMul(IReadOnlyList<TracedProduct> products) => Tunings.Add((products, Products.Count));
    }

    [Theory]
    [InlineData(false, true, 0.1f, AttentionFusion.Unfused, WeightPrecision.Fp32)]
    [InlineData(false, true, 0f, AttentionFusion.Fused, WeightPrecision.Bf16)]
    [InlineData(true, false, 0.1f, AttentionFusion.Unfused, WeightPrecision.Bf16)]
    [InlineData(true, false, 0f, AttentionFusion.Unfused, WeightPrecision.Fp16)]
    [InlineData(true, false, 0.1f, AttentionFusion.Fused, WeightPrecision.Fp32)]
    [InlineData(true, true, 0.1f, AttentionFusion.Unfused, WeightPrecision.Fp32)]
    // Activations in 16 bits: bench matmul's products carry the step's storages.
    [InlineData(true, false, 0.1f, AttentionFusion.Unfused, WeightPrecision.Bf16, ActivationPrecision.Bf16)]
    [InlineData(false, true, 0f, AttentionFusion.Fused, WeightPrecision.Fp32, ActivationPrecision.Fp16)]
    public void TheTunerAndBenchMatMulSeeEveryProductTheStepEmits(bool gated, bool tied, float dropout, AttentionFusion fusion, WeightPrecision precision,
                                                                   ActivationPrecision activations = ActivationPrecision.Fp32)
    {
        using var dir = new TempDir();
        var config = Config(gated, tied, dropout);
        RandomT5.Write(dir.Path, config, seed: 1);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        using var be = new TuningRecorder { AttentionFusion = fusion, Activations = activations };
        using var weights = new T5Weights(ckpt, be, precision);
        const int promptLength = 5, batchSize = 3;
        using var trainer = new PromptTrainer(weights, new float[promptLength * config.DModel], new AdafactorSettings(), dropout, seed: 0);
        var examples = new[] { new EncodedExample([3, 4, 5, 1], [6, 1]), new EncodedExample([7, 1], [8, 9, 1]) };
        trainer.TrainStep(examples, batchSize);
        trainer.TrainStep(examples, batchSize);
        var emitted = be.Products;
        // Worked out from the config: the weights' products (forward, then dX = dY·W of each but
        // the bottom decoder self-attention's), and the attentions, as products or fused.
        int ne = config.NumLayers, nd = config.NumDecoderLayers, g = gated ? 1 : 0;
        int forward = ne * (6 + g) + nd * (10 + g) + 1, backward = 1 + nd * (6 + g) + (nd - 1) * 4 + ne * (6 + g);
        Assert.Equal(forward + backward, emitted.Count(p => p.Weight is not null));
        int attentions = ne + 2 * nd, attentionsBackward = ne + 2 * nd - 1;
        bool fused = fusion == AttentionFusion.Fused;
        Assert.Equal(fused ? 0 : 2 * attentions + 4 * attentionsBackward, emitted.Count(p => p.Weight is null));
        Assert.Equal(fused ? attentions + attentionsBackward : 0, be.FusedAttentions);
        // Every epilogue drops where the step does (the tuner and bench matmul time them so).
        Assert.All(emitted.Where(p => p.Spec.Epilogue != MatMulEpilogue.None), p => Assert.Equal(dropout > 0, p.Spec.EpilogueDropout));
        Assert.Contains(emitted, p => p.Spec.Epilogue != MatMulEpilogue.None);
        // Weights are read in the model's precision, every other B is an fp32 activation.
        Assert.All(emitted.Where(p => p.Weight is not null), p => Assert.Equal(precision, p.Weight));

        // The tuner: offered the step's products once (the second step has the same shape), before
        // the step emitted any, and exactly those, in order, named and phased alike.
        var (offered, emittedBefore) = Assert.Single(be.Tunings);
        Assert.Equal(0, emittedBefore);
        Assert.Equal(emitted, offered);

        // bench matmul: every product the step emits, each as often, no two rows alike.
        var shape = HostBatch.Build(examples, promptLength, batchSize: batchSize, decoderStart: config.DecoderStartTokenId).Shape;
        var listed = StepProductChecks.Of(config, shape, precision, be.Activations, be.FusesAttention);
        var expected = emitted.GroupBy(p => (p.Spec, p.Weight)).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(expected.Count, listed.Select(p => (p.Spec, p.Weight)).Distinct().Count());
        Assert.Equal(expected.Count, listed.Count);
        foreach (var p in listed)
            Assert.True(expected.TryGetValue((p.Spec, p.Weight), out int n) && n == p.Count,
                        $"bench matmul lists {p.Count} x {Describe(p.Spec)} ({p.Name}); the step emits {n}");
        Assert.Equal(emitted.Count, listed.Sum(p => p.Count));
        // 16-bit activations reach the products: some read a 16-bit A and write a 16-bit C.
        Assert.Equal(activations != ActivationPrecision.Fp32, listed.Any(p => p.Spec.AStorage != ActivationPrecision.Fp32 && p.Spec.CStorage != ActivationPrecision.Fp32));
        Assert.All(listed, p => Assert.All(new[] { p.Spec.AStorage, p.Spec.BStorage, p.Spec.CStorage },
                                           storage => Assert.True(storage == ActivationPrecision.Fp32 || storage == activations)));
    }

    /// <summary>Names say what a product is, from its operands: a weight's product by the weight
    /// (dX where the backward carries a gradient through it), two activations' by both, the same
    /// for every block.</summary>
    [Fact]
    public void ProductsAreNamedFromTheirOperands()
    {
        var config = Config(gated: true, tied: false, dropout: 0.1f);
        var trace = T5Pass.Trace(config, new BatchShape(2, 8, 8, 4), ActivationMode.Store, 0.1f, WeightPrecision.Bf16, _ => false);
        string[] enc = ["enc q", "enc k", "enc v", "enc o", "enc wi_0", "enc wi_1", "enc wo"];
        string[] dec = ["dec q", "dec k", "dec v", "dec o", "xattn q", "xattn k", "xattn v", "xattn o", "dec wi_0", "dec wi_1", "dec wo"];
        string[] weights = [.. enc, .. dec, "lm head"];
        string[] attention =
        [
            "enc.q·enc.k", "dropped_probs·enc.v", "dec.q·dec.k", "dropped_probs·dec.v", "dec.xq·dec.xk", "dropped_probs·dec.xv",
            "d_ctx·enc.v", "d_probs·enc.k", "d_probs·enc.q", "d_ctx·dec.v", "d_probs·dec.k", "d_probs·dec.q", "d_ctx·dec.xv", "d_xprobs·dec.xk", "d_xprobs·dec.xq",
            "dropped_probs·d_ctx",
        ];
        Assert.Equal(weights.Concat(weights.Select(w => w + " dX")).Concat(attention).Order(StringComparer.Ordinal),
                     trace.Select(p => p.Name).Distinct().Order(StringComparer.Ordinal));
        // Products of weights by the phase they run in; the forward's are not named dX.
        Assert.All(trace, p => Assert.Equal(p.Phase == T5Pass.Phases.Backward && p.Weight is not null, p.Name.EndsWith(" dX", StringComparison.Ordinal)));
        Assert.Equal(
            [T5Pass.Phases.EncoderForward, T5Pass.Phases.DecoderForward, T5Pass.Phases.LmHeadLoss, T5Pass.Phases.Backward],
            trace.Select(p => p.Phase).Distinct());
    }

    [Fact]
    public void ItsFlopsAreTheStepsCountPlusTheBottomCrossQuery()
    {
        var config = T5Config.Named("t5-base");
        var shape = new BatchShape(32, 512, 8, 100);
        var products = StepProduct.Distinct(T5Pass.Trace(config, shape, ActivationMode.Store, 0.1f, WeightPrecision.Fp32, _ => false));
        long rows = (long)shape.Batch * shape.TargetLength, inner = config.InnerDim;
        long bottomCrossQuery = 2 * rows * shape.EncoderLength * inner + 2 * rows * config.DModel * inner;
        Assert.Equal(StepFlops.Total(config, shape) + bottomCrossQuery, products.Sum(p => p.Count * p.Flops));
    }

    static string Describe(MatMulSpec s) => $"{s.M}x{s.N}x{s.K} batch {s.Batch1}x{s.Batch2} (A strides {s.AStrideM},{s.AStrideK}; B strides {s.BStrideK},{s.BStrideN}; alpha {s.Alpha}; accumulate {s.Accumulate})";

    /// <summary>A trace backend that also keeps, for each product with an activation epilogue,
    /// its epilogue, phase and whether a gate keeps its product in C.</summary>
    sealed class EpilogueRecorder : TraceBackend
    {
        public readonly List<(MatMulEpilogue Kind, string Phase, bool KeepsProduct)> Recorded = new();

        internal override void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec spec, MatMulEpilogueOperands<Tensor>? epilogue = null)
        {
            base.MatMul(a, b, c, spec, epilogue);
            if (epilogue is { Kind: MatMulEpilogue.Gate or MatMulEpilogue.Relu } e)
                Recorded.Add((Products[^1].Spec.Epilogue, Products[^1].Phase, e.Gate?.KeepsProduct ?? false));
        }
    }

    /// <summary>The feed-forward's activation runs in its product's store in every block and mode
    /// (wi's relu epilogue, wi_1's gate epilogue), forward and recomputed: the specs say so, as
    /// the kernels are built by them. The gate writes its product b into C only where the backward
    /// reads it: in a storing forward and in a recomputing backward's re-run of each block, not in
    /// Recompute's first forward nor in inference.</summary>
    [Theory]
    [InlineData(true, ActivationMode.Inference), InlineData(true, ActivationMode.Store), InlineData(true, ActivationMode.Recompute)]
    [InlineData(false, ActivationMode.Store), InlineData(false, ActivationMode.Recompute)]
    public void TheFeedForwardActivationIsInItsProductsStore(bool gated, ActivationMode mode)
    {
        var config = Config(gated, tied: !gated, dropout: 0.1f);
        var shape = new BatchShape(2, 6, 3, 4);
        using var be = new EpilogueRecorder();
        using (var weights = T5Weights.Unloaded(config, be, WeightPrecision.Fp32))
        using (var prompts = be.Floats((long)shape.PromptLength * config.DModel, "prompt"))
        using (var pass = new T5Pass(weights, shape, mode, prompts, 0.1f))
            be.Record(() =>
            {
                pass.EmitForward();
                if (mode != ActivationMode.Inference) pass.EmitBackward();
            }).Dispose();
        int blocks = config.NumLayers + config.NumDecoderLayers;
        var kind = gated ? MatMulEpilogue.Gate : MatMulEpilogue.Relu;
        var recorded = be.Recorded;
        Assert.Equal(mode == ActivationMode.Recompute ? 2 * blocks : blocks, recorded.Count);
        Assert.All(recorded, r => Assert.Equal(kind, r.Kind));
        if (mode == ActivationMode.Recompute) Assert.Equal(blocks, recorded.Count(r => r.Phase == T5Pass.Phases.Recompute));
        if (gated) Assert.All(recorded, r => Assert.Equal(mode == ActivationMode.Store || r.Phase == T5Pass.Phases.Recompute, r.KeepsProduct));
        // No product of the relu model's forward writes a pre-activation: its only products of
        // d_ff columns are wi's, each with the relu.
        if (!gated)
            Assert.DoesNotContain(be.Products, p => p.Spec.N == config.DFf && p.Spec.Epilogue != MatMulEpilogue.Relu && p.Phase != T5Pass.Phases.Backward);
    }
}
