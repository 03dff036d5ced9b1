using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using Xunit.Sdk;

namespace VkPrompt.Tests.Training;

/// <summary>Further logical devices on the fixture's physical device, for the stages of a
/// pipeline (as <c>--pipeline 0,0</c> opens them), made when first asked for.</summary>
public sealed class PipelineDevices : IDisposable
{
    readonly Lazy<GpuContext>[] contexts = Enumerable.Range(0, 2)
        .Select(_ => new Lazy<GpuContext>(() => GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null })))
        .ToArray();

    /// <summary>The i-th further context (0 or 1).</summary>
    public GpuContext this[int i] => contexts[i].Value;

    internal IEnumerable<GpuContext> Made => contexts.Where(c => c.IsValueCreated).Select(c => c.Value);

    /// <summary>The validation errors each further device has reported so far, for <see cref="ThrowOnErrorsSince"/>.</summary>
    internal Dictionary<GpuContext, int> ErrorCounts() => Made.ToDictionary(c => c, c => c.Validation.ErrorCount);

    /// <summary>Fails a test with the validation errors the further devices reported since <paramref name="before"/>.</summary>
    internal void ThrowOnErrorsSince(Dictionary<GpuContext, int> before)
    {
        var fresh = Made.SelectMany(c => c.Validation.Errors.Skip(before.GetValueOrDefault(c))).ToList();
        if (fresh.Count > 0) throw new XunitException($"{fresh.Count} Vulkan validation error(s) on a further device:\n" + string.Join("\n", fresh));
    }

    public void Dispose()
    {
        foreach (var c in Made) c.Dispose();
    }
}

/// <summary>
/// A model split across devices (ModelPipeline, PipelineStep, PipelineTrainer): on two or three
/// logical Vulkan devices of one physical device (and on CPU backends), every golden case's
/// gradient and K-step prompt within docs/numerics.md's tolerances for cuts inside the encoder,
/// at its end and inside the decoder, batches cut into micro-batches that do not divide them
/// evenly; with one micro-batch the very bits of one device; the same bits on every run.
/// </summary>
public sealed class PipelineTests(GpuFixture f, PipelineDevices devices) : GpuTest(f), IClassFixture<PipelineDevices>
{
    readonly Dictionary<GpuContext, int> errorsBefore = devices.ErrorCounts();

    public override void Dispose()
    {
        base.Dispose();
        devices.ThrowOnErrorsSince(errorsBefore);
    }

    static string Root(string set) => set == "golden" ? TestPaths.Golden : TestPaths.GoldenVariants;

    static readonly string[] Variants = ["tiny-ul2", "tiny-umt5", "tiny-byt5"];

    static IEnumerable<(string Set, string Model, string Case)> AllCases() =>
        Directory.GetDirectories(TestPaths.Golden).Order().Select(d => ("golden", Path.GetFileName(d)))
            .Concat(Variants.Select(v => ("variants", v)))
            .SelectMany(m => Directory.GetDirectories(Path.Combine(Root(m.Item1), m.Item2, GoldenCase.Fp32Cases)).Order().Select(c => (m.Item1, m.Item2, Path.GetFileName(c))));

    /// <summary>Where the stages are cut: "encoder" inside the encoder, "end" at its end (the
    /// encoder output alone crosses), "decoder" inside the decoder (the decoder's stream and the
    /// encoder output cross), "three" three stages (inside both stacks, or inside the encoder and
    /// at its end where the decoder has one layer), "balanced" by
    /// <see cref="ModelPipeline.Balance"/>; null where the model has too few layers for it.</summary>
    static IReadOnlyList<LayerRange>? Cut(T5Config c, string split)
    {
        int ne = c.NumLayers, n = ne + c.NumDecoderLayers;
        int[]? cuts = split switch
        {
            "encoder" => ne >= 2 ? [ne / 2] : null,
            "end" => [ne],
            "decoder" => c.NumDecoderLayers >= 2 ? [ne + c.NumDecoderLayers / 2] : null,
            "three" => ne >= 2 ? [ne / 2, ne + (c.NumDecoderLayers >= 2 ? 1 : 0)] : null,
            "balanced" => null,
            _ => throw new ArgumentException(split),
        };
        if (split == "balanced") return ModelPipeline.Balance(c, WeightPrecision.Fp32, 2);
        if (cuts is null) return null;
        int[] bounds = [0, .. cuts, n];
        return Enumerable.Range(0, bounds.Length - 1).Select(i => LayerRange.Of(c, bounds[i], bounds[i + 1])).ToList();
    }

    public static TheoryData<string, string, string, string, string> GradientCases()
    {
        var data = new TheoryData<string, string, string, string, string>();
        foreach (var (set, model, c) in AllCases())
        {
            // Only the cuts the model has the layers for: a row for one it lacks would check nothing.
            var config = T5Config.Load(Path.Combine(Root(set), model, "config.json"));
            var splits = new[] { "encoder", "end", "decoder", "three" }.Where(split => Cut(config, split) is not null).ToList();
            foreach (var split in splits)
                data.Add(set, model, c, split, "vulkan");
            data.Add(set, model, c, "end", "cpu");
            // Fused attention across a cut inside the decoder, or inside the encoder where the decoder has one layer (ByT5's).
            data.Add(set, model, c, splits.Contains("decoder") ? "decoder" : "encoder", "vulkan-fused");
        }
        return data;
    }

    public static TheoryData<string, string, string, string> StepCases()
    {
        var data = new TheoryData<string, string, string, string>();
        foreach (var (set, model, c) in AllCases())
            foreach (var backend in new[] { "vulkan", "cpu" })
                data.Add(set, model, c, backend);
        return data;
    }

    /// <summary>The stages' backends: the fixture's context first, then the further ones; "-fused"
    /// runs every attention fused, as in <see cref="GoldenCase.MakeBackend"/>.</summary>
    List<Backend> Backends(string backend, int stages) =>
        Enumerable.Range(0, stages).Select(s => GoldenCase.MakeBackend(backend, _ => s == 0 ? Ctx : devices[s - 1])).ToList();

    /// <summary>Runs <paramref name="check"/> on the case's model split as <paramref name="ranges"/> says.</summary>
    void WithPipeline(GoldenCase g, string backend, IReadOnlyList<LayerRange> ranges, int microBatches, Action<ModelPipeline> check,
                      WeightPrecision precision = WeightPrecision.Fp32)
    {
        var backends = Backends(backend, ranges.Count);
        try
        {
            using var pipeline = new ModelPipeline(g.Ckpt, backends, precision, microBatches, ranges);
            check(pipeline);
        }
        finally
        {
            foreach (var b in backends) b.Dispose();
        }
    }

    /// <summary>Four micro-batches: the six examples of most cases make 2+2+1+1 rows, p128's four 1+1+1+1.</summary>
    [Theory, MemberData(nameof(GradientCases))]
    public void GradientAndLossMatchGolden(string set, string model, string caseName, string split, string backend)
    {
        using var g = GoldenCase.Load(Root(set), model, caseName);
        var ranges = Cut(g.Ckpt.Config, split);
        Assert.NotNull(ranges);   // GradientCases lists only the cuts the model has the layers for
        WithPipeline(g, backend, ranges, 4, p => g.AssertGradientAndLoss(PipelineTrainer.Gradient(p, g.Examples, g.Prompt0)));
    }

    /// <summary>train.json's steps (batches of two, one row per micro-batch) through two balanced stages.</summary>
    [Theory, MemberData(nameof(StepCases))]
    public void AdafactorStepsMatchGolden(string set, string model, string caseName, string backend)
    {
        using var g = GoldenCase.Load(Root(set), model, caseName);
        WithPipeline(g, backend, ModelPipeline.Balance(g.Ckpt.Config, WeightPrecision.Fp32, 2), 2,
                     p => g.AssertAdafactorSteps((prompt, settings) => new PipelineTrainer(p, prompt, settings, dropout: 0, seed: 0)));
    }

    /// <summary>Scoring through the stages (the forward alone), with and without the prompt, in
    /// three micro-batches: the golden log-likelihoods.</summary>
    [Theory, MemberData(nameof(StepCases))]
    public void ScoresMatchGolden(string set, string model, string caseName, string backend)
    {
        using var g = GoldenCase.Load(Root(set), model, caseName);
        WithPipeline(g, backend, Cut(g.Ckpt.Config, "end")!, 3, p =>
        {
            using var scorer = new PipelineScorer(p);
            g.AssertScores(scorer);
        });
    }

    /// <summary>The int8 golden cases (weights stored as int8 on every stage) through three stages.</summary>
    [Theory]
    [InlineData("tiny-v11", "p8")]
    [InlineData("tiny-v10-bf16", "p5")]
    public void Int8GradientAndStepsMatchGolden(string model, string caseName)
    {
        using var g = GoldenCase.Load(TestPaths.Golden, model, caseName, GoldenCase.Int8Cases);
        WithPipeline(g, "vulkan", Cut(g.Ckpt.Config, "three")!, 4, p =>
        {
            g.AssertGradientAndLoss(PipelineTrainer.Gradient(p, g.Examples, g.Prompt0));
            g.AssertAdafactorSteps((prompt, settings) => new PipelineTrainer(p, prompt, settings, dropout: 0, seed: 0));
        }, WeightPrecision.Int8);
    }

    static GoldenCase TinyV11 => GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");

    /// <summary>With one micro-batch a pipeline runs the one-device ops on the same numbers, so on
    /// like devices it gives the one-device bits: the gradient for every kind of cut, and two
    /// training steps with dropout (micro-batch 0 draws the one-device masks).</summary>
    [Fact]
    public void OneMicroBatchGivesTheOneDeviceBits()
    {
        using var g = TinyV11;
        using var be = new GpuBackend(Ctx) { AttentionFusion = AttentionFusion.Unfused, Activations = ActivationPrecision.Fp32 };   // as the stages' (GoldenCase.MakeBackend)
        using var weights = new T5Weights(g.Ckpt, be);
        var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
        var settings = new AdafactorSettings();
        var batch = g.Examples.Take(4).ToList();
        float[] oneDevice;
        double[] oneDeviceLosses;
        using (var trainer = new PromptTrainer(weights, g.Prompt0, settings, dropout: 0.1f, seed: 7))
        {
            oneDeviceLosses = [trainer.TrainStep(batch), trainer.TrainStep(batch)];
            oneDevice = trainer.Prompt();
        }
        foreach (var split in new[] { "encoder", "end", "decoder", "three" })
            WithPipeline(g, "vulkan", Cut(g.Ckpt.Config, split)!, 1, p =>
            {
                var (pLoss, pGrad) = PipelineTrainer.Gradient(p, g.Examples, g.Prompt0);
                Assert.Equal(loss, pLoss);
                Check.BitIdentical(grad, pGrad, $"gradient cut {split}");
                using var trainer = new PipelineTrainer(p, g.Prompt0, settings, dropout: 0.1f, seed: 7);
                Assert.Equal(oneDeviceLosses, new[] { trainer.TrainStep(batch), trainer.TrainStep(batch) });
                Check.BitIdentical(oneDevice, trainer.Prompt(), $"prompt after two steps with dropout, cut {split}");
            });
    }

    /// <summary>Runs give the same bits: three stages, three micro-batches of a batch of five
    /// (2+2+1), dropout on, two trainers from the same state.</summary>
    [Fact]
    public void RunsAreBitIdentical()
    {
        using var g = TinyV11;
        var batch = g.Examples.Take(5).ToList();
        WithPipeline(g, "vulkan", Cut(g.Ckpt.Config, "three")!, 3, p =>
        {
            (double[] Losses, float[] Prompt) Train()
            {
                using var trainer = new PipelineTrainer(p, g.Prompt0, new AdafactorSettings(), dropout: 0.1f, seed: 3);
                double[] losses = [trainer.TrainStep(batch), trainer.TrainStep(batch), trainer.TrainStep(g.Examples)];
                return (losses, trainer.Prompt());
            }
            var first = Train();
            var second = Train();
            Assert.Equal(first.Losses, second.Losses);
            Check.BitIdentical(first.Prompt, second.Prompt, "prompt after three steps");
            Assert.All(first.Losses, l => Assert.True(double.IsFinite(l)));
            Assert.False(first.Prompt.SequenceEqual(g.Prompt0));
        });
    }

    /// <summary>A batch padded to a fixed size (TrainingRun's last batch) whose padding fills a
    /// whole micro-batch, and --recompute, against the one device: within the golden tolerances.</summary>
    [Fact]
    public void PaddedBatchesAndRecomputeMatchOneDevice()
    {
        using var g = TinyV11;
        using var be = new GpuBackend(Ctx) { AttentionFusion = AttentionFusion.Unfused, Activations = ActivationPrecision.Fp32 };   // as the stages' (GoldenCase.MakeBackend)
        using var weights = new T5Weights(g.Ckpt, be);
        var batch = g.Examples.Take(3).ToList();
        var settings = new AdafactorSettings();
        double oneLoss;
        float[] onePrompt;
        using (var trainer = new PromptTrainer(weights, g.Prompt0, settings, dropout: 0, seed: 0))
        {
            oneLoss = trainer.TrainStep(batch, batchSize: 8);
            onePrompt = trainer.Prompt();
        }
        var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
        WithPipeline(g, "vulkan", Cut(g.Ckpt.Config, "end")!, 4, p =>
        {
            // 8 rows in four micro-batches of two: the last two hold padding alone.
            using var trainer = new PipelineTrainer(p, g.Prompt0, settings, dropout: 0, seed: 0, activations: ActivationMode.Recompute);
            double pLoss = trainer.TrainStep(batch, batchSize: 8);
            Assert.True(Math.Abs(pLoss - oneLoss) <= 1e-3 + 1e-4 * oneLoss, $"loss {pLoss} vs {oneLoss} on one device");
            double err = Check.NormRelativeError(onePrompt, trainer.Prompt());
            Assert.True(err <= 1e-3, $"prompt relative error {err:E3}");
            var (rLoss, rGrad) = PipelineTrainer.Gradient(p, g.Examples, g.Prompt0, ActivationMode.Recompute);
            Assert.True(Math.Abs(rLoss - loss) <= 1e-3 + 1e-4 * loss);
            Assert.True(Check.NormRelativeError(grad, rGrad) <= 1e-3);
        });
    }

    /// <summary>The balance rule: of every cut into consecutive non-empty stages, one whose largest
    /// stage's weights are the fewest bytes; and each stage holds just that many.</summary>
    [Fact]
    public void BalanceMinimisesTheLargestStage()
    {
        foreach (var (set, model, _) in AllCases().DistinctBy(c => c.Model))
        {
            using var ckpt = T5Checkpoint.Open(Path.Combine(Root(set), model));
            var c = ckpt.Config;
            int n = c.NumLayers + c.NumDecoderLayers;
            for (int stages = 2; stages <= Math.Min(n, 4); stages++)
            {
                var ranges = ModelPipeline.Balance(c, WeightPrecision.Int8, stages);
                Assert.Equal(stages, ranges.Count);
                Assert.Equal(0, ranges[0].First);
                Assert.Equal(n, ranges[^1].End);
                for (int s = 1; s < stages; s++) Assert.Equal(ranges[s - 1].End, ranges[s].First);
                long worst = ranges.Max(r => T5Weights.Bytes(c, WeightPrecision.Int8, r));
                Assert.Equal(BruteForce(c, stages, 0), worst);
            }
            Assert.True(T5Weights.Bytes(c, WeightPrecision.Fp32, LayerRange.Of(c, 0, 1)) < T5Weights.Bytes(c, WeightPrecision.Fp32) / 2, $"{model}: a one-layer stage holds under half the model");
        }

        static long BruteForce(T5Config c, int stages, int first)
        {
            int n = c.NumLayers + c.NumDecoderLayers;
            if (stages == 1) return T5Weights.Bytes(c, WeightPrecision.Int8, LayerRange.Of(c, first, n));
            long best = long.MaxValue;
            for (int end = first + 1; end <= n - stages + 1; end++)
                best = Math.Min(best, Math.Max(T5Weights.Bytes(c, WeightPrecision.Int8, LayerRange.Of(c, first, end)), BruteForce(c, stages - 1, end)));
            return best;
        }
    }

    /// <summary>Each stage allocates only its own weights: on the device, the stages together hold
    /// the one-device weights plus what two stages both need (here the shared embedding).</summary>
    [Fact]
    public void EachStageHoldsOnlyItsWeights()
    {
        using var g = TinyV11;
        var c = g.Ckpt.Config;
        var ranges = Cut(c, "end")!;
        WithPipeline(g, "cpu", ranges, 2, p =>
        {
            for (int s = 0; s < 2; s++)
                Assert.Equal(T5Weights.Bytes(c, WeightPrecision.Fp32, ranges[s]), p.Stages[s].Backend.MemoryUse.Current);
            // Stage 0 embeds the input, stage 1 the decoder's: both hold shared.weight, the only tensor held twice.
            long shared = (long)c.VocabSize * c.DModel * sizeof(float);
            Assert.Equal(T5Weights.Bytes(c, WeightPrecision.Fp32) + shared, p.Stages.Sum(w => w.Backend.MemoryUse.Current));
            var e = Assert.Throws<InvalidOperationException>(() => p.Stages[0].Decoder[0]);
            Assert.Contains("not on this stage", e.Message);
        });
    }

    [Fact]
    public void OpenPipelineRefusesWhatCannotWork()
    {
        string dir = Path.Combine(TestPaths.Golden, "tiny-v11");
        var tooMany = Assert.Throws<TrainingOptionException>(() => PromptModel.OpenPipeline(dir, Enumerable.Repeat<Func<Backend>>(() => new CpuBackend(), 5).ToList()));
        Assert.Contains("2 to 4", tooMany.Message);
        Assert.Throws<TrainingOptionException>(() => PromptModel.OpenPipeline(dir, [() => new CpuBackend()]));
        using var model = PromptModel.OpenPipeline(dir, [() => new CpuBackend(), () => new CpuBackend()]);
        Assert.Equal(2, model.Backends.Count);
        var e = Assert.Throws<TrainingOptionException>(() => model.Generate([new EncodedExample([5, 1], [6, 1])]).ToList());
        Assert.Contains("split across devices", e.Message);
        Assert.Single(model.Score([new EncodedExample([5, 1], [6, 1])]));
        Assert.Empty(model.Score([]));
        // Each rank of a process group holds the whole model: a pipeline is refused there.
        var ranks = Assert.Throws<TrainingOptionException>(() => model.ProcessGroup = DataParallelTests.ThreadGroup.Of(2)[0]);
        Assert.Contains("several processes", ranks.Message);
        // A stage's weights alone would score with part of the model (training's validation makes a Scorer of them).
        Assert.Throws<NotSupportedException>(() => new Scorer(model.Pipeline!.Stages[0]));
    }
}
