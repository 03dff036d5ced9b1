using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>The memory plan (<see cref="MemoryPlan"/>) against the memory real runs take on
/// lavapipe: the peak the device's pool counts in use (<see cref="Backend.MemoryUse"/>) during a
/// training step, a training step beside validation's scoring pass, and a scoring batch, from
/// the weights loaded on. Margin: none for the buffers as asked for (lavapipe sizes a buffer as
/// asked, so <see cref="PlannedMemory.RequestedPeak"/> is the measured peak to the byte); the
/// plan's peak rounds each buffer up to 256 bytes, the most alignment Vulkan lets a driver ask,
/// so it is at least the measured peak and at most 255 bytes a buffer above it.</summary>
public sealed class MemoryPlanTests(GpuFixture f) : GpuTest(f)
{
    const int Batch = 3, InputLength = 13, TargetLength = 5, PromptLength = 4;

    /// <summary>The third shape: a per-layer position bias (umT5), gated-silu, heads × d_kv wider
    /// than d_model and one decoder layer, with random weights.</summary>
    static string RandomModel(TempDir random)
    {
        var config = T5Config.Named("umt5-base") with
        {
            DModel = 40, DKv = 16, NumHeads = 3, DFf = 72, NumLayers = 2, NumDecoderLayers = 1, VocabSize = 300,
            FeedForwardProj = T5FeedForward.GatedSilu,
        };
        RandomT5.Write(random.Path, config, seed: 3);
        return random.Path;
    }

    public static TheoryData<string, WeightPrecision, AttentionFusion, ActivationMode> Cases()
    {
        var data = new TheoryData<string, WeightPrecision, AttentionFusion, ActivationMode>();
        foreach (var model in new[] { "tiny-v11", "tiny-v10-bf16", "random" })
            foreach (var precision in new[] { WeightPrecision.Fp32, WeightPrecision.Int8 })
                foreach (var attention in new[] { AttentionFusion.Fused, AttentionFusion.Unfused })
                    foreach (var activations in new[] { ActivationMode.Store, ActivationMode.Recompute })
                        data.Add(model, precision, attention, activations);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ThePlanIsThePeakOfARealRun(string model, WeightPrecision precision, AttentionFusion attention, ActivationMode activations) =>
        PlanIsMeasured(Ctx, model, precision, attention, activations);

    public static TheoryData<string, WeightPrecision, AttentionFusion> MatrixUnitsCases()
    {
        var data = new TheoryData<string, WeightPrecision, AttentionFusion>();
        foreach (var model in new[] { "tiny-v11", "random" })
            foreach (var precision in new[] { WeightPrecision.Bf16, WeightPrecision.Int8 })
                foreach (var attention in new[] { AttentionFusion.Fused, AttentionFusion.Unfused })
                    data.Add(model, precision, attention);
        return data;
    }

    /// <summary>Where products run on the matrix units (emulated on lavapipe), the fp16 copies
    /// of their activations that a recording keeps are in the plan too, to the byte.</summary>
    [SkippableTheory]
    [MemberData(nameof(MatrixUnitsCases))]
    public void ThePlanCountsTheMatrixUnitsHalfCopies(string model, WeightPrecision precision, AttentionFusion attention)
    {
        var ctx = MatrixUnitsCtx;
        Assert.True(ctx.Plan.HalfCopies);
        var (settings, plan) = PlanIsMeasured(ctx, model, precision, attention, ActivationMode.Store);
        // Without the device's plan the copies are not there: they were counted.
        var withoutCopies = MemoryPlan.ForDevice(settings, new PlanDevice("0", ctx.Capabilities), Batch);
        Assert.True(plan.Training.Peak > withoutCopies.Training.Peak);
        Assert.True(plan.Scoring.Peak > withoutCopies.Scoring.Peak);
    }

    public static TheoryData<string, ActivationPrecision, AttentionFusion, ActivationMode> SixteenBitCases()
    {
        var data = new TheoryData<string, ActivationPrecision, AttentionFusion, ActivationMode>();
        foreach (var model in new[] { "tiny-v11", "random" })
            foreach (var storage in new[] { ActivationPrecision.Bf16, ActivationPrecision.Fp16 })
                foreach (var attention in new[] { AttentionFusion.Fused, AttentionFusion.Unfused })
                    foreach (var mode in new[] { ActivationMode.Store, ActivationMode.Recompute })
                        data.Add(model, storage, attention, mode);
        return data;
    }

    /// <summary>Block activations kept in 16 bits (--activations bf16|fp16) are planned to the
    /// byte too, and the plan is smaller than fp32's by what they save.</summary>
    [Theory]
    [MemberData(nameof(SixteenBitCases))]
    public void ThePlanCountsSixteenBitActivations(string model, ActivationPrecision storage, AttentionFusion attention, ActivationMode mode)
    {
        var (settings, plan) = PlanIsMeasured(Ctx, model, WeightPrecision.Fp32, attention, mode, storage);
        var fp32 = MemoryPlan.ForDevice(settings with { Activations = ActivationPrecision.Fp32 }, new PlanDevice("0", Ctx.Capabilities, Ctx.Plan), Batch);
        Assert.True(plan.Training.Work < fp32.Training.Work, $"{storage}: {plan.Training.Work} bytes of work, fp32 {fp32.Training.Work}");
        Assert.True(plan.Scoring.Work < fp32.Scoring.Work);
        Assert.Equal(fp32.Training.Weights, plan.Training.Weights);
    }

    (MemoryPlanSettings, PlannedDevice) PlanIsMeasured(GpuContext ctx, string model, WeightPrecision precision, AttentionFusion attention, ActivationMode activations,
                                                       ActivationPrecision storage = ActivationPrecision.Fp32)
    {
        using var random = new TempDir();
        string dir = model == "random" ? RandomModel(random) : Path.Combine(TestPaths.Golden, model);
        using var ckpt = T5Checkpoint.Open(dir);
        var config = ckpt.Config;
        var settings = new MemoryPlanSettings(config, precision, Batch, InputLength, TargetLength, PromptLength, attention, activations, Activations: storage);
        var plan = MemoryPlan.ForDevice(settings, new PlanDevice("0", ctx.Capabilities, ctx.Plan), Batch);

        var be = new GpuBackend(ctx) { AttentionFusion = attention, Activations = storage };
        long before = be.MemoryUse.Current;
        be.ResetPeakMemory();
        using var weights = new T5Weights(ckpt, be, precision);
        long loaded = be.MemoryUse.Current;
        var examples = SyntheticBatch.Create(Batch, InputLength, TargetLength, config, seed: 1);
        var prompt = SyntheticBatch.Prompt(PromptLength, config.DModel, seed: 2);
        var prompts = PromptSet.Stack([prompt], config.DModel);

        long Measured(Action run)
        {
            be.ResetPeakMemory();
            run();
            Assert.Equal(loaded, be.MemoryUse.Current);
            return be.MemoryUse.Peak - before;
        }
        long training = Measured(() =>
        {
            using var trainer = new PromptTrainer(weights, prompt, new AdafactorSettings(), (float)config.DropoutRate, seed: 0, activations);
            Assert.True(double.IsFinite(trainer.TrainStep(examples, Batch)));
        });
        long withValidation = Measured(() =>
        {
            using var trainer = new PromptTrainer(weights, prompt, new AdafactorSettings(), (float)config.DropoutRate, seed: 0, activations);
            trainer.TrainStep(examples, Batch);
            using var scorer = new Scorer(weights);
            scorer.Score(examples, prompts);
        });
        long scoring = Measured(() =>
        {
            using var scorer = new Scorer(weights);
            Assert.All(scorer.Score(examples, prompts), r => Assert.True(double.IsFinite(r.LogProb)));
        });

        foreach (var (planned, measured) in new[] { (plan.Training, training), (plan.TrainingWithValidation, withValidation), (plan.Scoring, scoring) })
        {
            Assert.Equal(measured, planned.RequestedPeak);
            Assert.InRange(planned.Peak, measured, measured + 255L * planned.Buffers);
            Assert.Equal(planned.Peak, planned.Weights + planned.PromptAndOptimizer + planned.Work);
        }
        Assert.Equal(0, plan.Scoring.PromptAndOptimizer);
        Assert.InRange(plan.Training.Weights, loaded - before, loaded - before + 255L * plan.Training.Buffers);
        Assert.True(plan.TrainingWithValidation.Peak > plan.Training.Peak);
        return (settings, plan);
    }
}

/// <summary>The memory plan of a model split across devices (<see cref="MemoryPlan.Pipeline"/>)
/// against real pipelines on two and three logical lavapipe devices: each stage's pool peak
/// (its context's <see cref="Backend.MemoryUse"/>) during a <see cref="PipelineTrainer"/> step,
/// one beside a <see cref="PipelineScorer"/> batch (validation), and a scoring batch, with
/// batches cut into micro-batches of uneven sizes. Margin as <see cref="MemoryPlanTests"/>'s:
/// none for the buffers as asked for, up to 255 bytes a buffer for the rounded peak.</summary>
public sealed class PipelineMemoryPlanTests(GpuFixture f, PipelineDevices devices) : GpuTest(f), IClassFixture<PipelineDevices>
{
    const int Batch = 5, InputLength = 13, TargetLength = 5, PromptLength = 4;

    readonly Dictionary<GpuContext, int> errorsBefore = devices.ErrorCounts();

    public override void Dispose()
    {
        base.Dispose();
        devices.ThrowOnErrorsSince(errorsBefore);
    }

    /// <summary>Two golden shapes (tiny-v11 untied, so its head is its own table; tiny-v10 tied,
    /// with three decoder layers), each at its own precision; 2 stages in 2 micro-batches (3 + 2
    /// rows), 3 stages in 4 (2 + 1 + 1 + 1); stored and recomputed activations; attention fused
    /// and unfused across them.</summary>
    public static TheoryData<string, WeightPrecision, int, int, AttentionFusion, ActivationMode> Cases()
    {
        var data = new TheoryData<string, WeightPrecision, int, int, AttentionFusion, ActivationMode>();
        foreach (var (model, precision) in new[] { ("tiny-v11", WeightPrecision.Fp32), ("tiny-v10-bf16", WeightPrecision.Int8) })
            foreach (int stages in new[] { 2, 3 })
                foreach (var activations in new[] { ActivationMode.Store, ActivationMode.Recompute })
                    data.Add(model, precision, stages, stages == 2 ? 2 : 4,
                             (stages == 2) == (activations == ActivationMode.Store) ? AttentionFusion.Fused : AttentionFusion.Unfused, activations);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ThePlanIsEachStagesPeakOfARealRun(string model, WeightPrecision precision, int stages, int microBatches, AttentionFusion attention, ActivationMode activations)
    {
        using var ckpt = T5Checkpoint.Open(Path.Combine(TestPaths.Golden, model));
        var config = ckpt.Config;
        var contexts = Enumerable.Range(0, stages).Select(s => s == 0 ? Ctx : devices[s - 1]).ToList();
        var settings = new MemoryPlanSettings(config, precision, Batch, InputLength, TargetLength, PromptLength, attention, activations);
        var plan = MemoryPlan.Pipeline(settings, [.. contexts.Select(c => new PlanDevice("0", c.Capabilities, c.Plan))], microBatches);

        var backends = contexts.Select(c => (Backend)new GpuBackend(c) { AttentionFusion = attention }).ToList();
        try
        {
            long[] InUse() => [.. backends.Select(b => b.MemoryUse.Current)];
            long[] before = InUse();
            using var pipeline = new ModelPipeline(ckpt, backends, precision, microBatches);
            long[] loaded = InUse();
            var examples = SyntheticBatch.Create(Batch, InputLength, TargetLength, config, seed: 1);
            var prompt = SyntheticBatch.Prompt(PromptLength, config.DModel, seed: 2);
            var prompts = PromptSet.Stack([prompt], config.DModel);

            long[] Measured(Action run)
            {
                foreach (var b in backends) b.ResetPeakMemory();
                run();
                Assert.Equal(loaded, InUse());
                return [.. backends.Select((b, s) => b.MemoryUse.Peak - before[s])];
            }
            PipelineTrainer Trainer() => new(pipeline, prompt, new AdafactorSettings(), (float)config.DropoutRate, seed: 0, activations);
            var training = Measured(() =>
            {
                using var trainer = Trainer();
                Assert.True(double.IsFinite(trainer.TrainStep(examples, Batch)));
            });
            var withValidation = Measured(() =>
            {
                using var trainer = Trainer();
                trainer.TrainStep(examples, Batch);
                using var scorer = new PipelineScorer(pipeline);
                scorer.Score(examples, prompts);
            });
            var scoring = Measured(() =>
            {
                using var scorer = new PipelineScorer(pipeline);
                Assert.All(scorer.Score(examples, prompts), r => Assert.True(double.IsFinite(r.LogProb)));
            });

            Assert.Equal(stages, plan.Count);
            for (int s = 0; s < stages; s++)
            {
                var p = plan[s];
                // The plan cuts the layers where the run does.
                Assert.Equal(pipeline.Stages[s].Layers, p.Layers);
                Assert.Equal(Batch, p.Rows);
                foreach (var (planned, measured) in new[] { (p.Training, training[s]), (p.TrainingWithValidation, withValidation[s]), (p.Scoring, scoring[s]) })
                {
                    Assert.Equal(measured, planned.RequestedPeak);
                    Assert.InRange(planned.Peak, measured, measured + 255L * planned.Buffers);
                    Assert.Equal(planned.Peak, planned.Weights + planned.PromptAndOptimizer + planned.Work);
                }
                Assert.InRange(p.Training.Weights, loaded[s] - before[s], loaded[s] - before[s] + 255L * p.Training.Buffers);
                // The prompt and the optimizer live on the first stage alone.
                Assert.Equal(s == 0, p.Training.PromptAndOptimizer > 0);
                Assert.Equal(0, p.Scoring.PromptAndOptimizer);
                Assert.True(p.TrainingWithValidation.Peak > p.Training.Peak);
            }
        }
        finally
        {
            foreach (var b in backends) b.Dispose();
        }
    }

    /// <summary>What cannot be a pipeline is refused as the run refuses it.</summary>
    [Fact]
    public void APipelineThatCannotBeIsRefused()
    {
        var settings = new MemoryPlanSettings(T5Config.Named("t5-small"), WeightPrecision.Fp32, 4, 16, 8, 4);
        var cpu = new PlanDevice("cpu");
        Assert.Contains("2 to 12", Assert.Throws<ArgumentException>(() => MemoryPlan.Pipeline(settings, [cpu])).Message);
        Assert.Contains("2 to 12", Assert.Throws<ArgumentException>(() => MemoryPlan.Pipeline(settings, Enumerable.Repeat(cpu, 13).ToList())).Message);
        Assert.Throws<ArgumentException>(() => MemoryPlan.Pipeline(settings, [cpu, cpu], microBatches: 0));
    }
}
