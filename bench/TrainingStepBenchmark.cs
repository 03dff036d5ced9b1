using BenchmarkDotNet.Attributes;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Bench;

/// <summary>The step of the workload's random-weight model with its weights stored as
/// <paramref name="Precision"/>, as <c>vkprompt bench</c> times it.</summary>
public sealed record StepCase(Workload Workload, WeightPrecision Precision) : IWork
{
    public double Flops => StepFlops.Total(Workload.Config, Workload.Step);
    public double Bytes => 0;

    public override string ToString() =>
        $"{Workload.Model} b{Workload.Step.Batch} in{Workload.Step.InputLength}+p{Workload.Step.PromptLength} t{Workload.Step.TargetLength} {Precision.Name()} weights";
}

/// <summary>One whole training step (forward, prompt backward, Adafactor: one replayed graph),
/// with the batch's upload and the log-probabilities' download around it, on a random-weight
/// model; GFLOP/s counts StepFlops (docs/benchmarks.md). One step per iteration: a step takes
/// seconds on lavapipe and milliseconds on a GPU, long enough to time alone.</summary>
[InvocationCount(1)]
public class TrainingStepBenchmark
{
    [ParamsSource(nameof(Cases))]
    public StepCase Case { get; set; } = null!;

    /// <summary>fp32 weights, and bf16 ones where the device reads 16-bit storage.</summary>
    public static IEnumerable<StepCase> Cases
    {
        get
        {
            var caps = Workload.SelectedDevice();
            var workload = Workload.FromEnvironment();
            return new[] { WeightPrecision.Fp32, WeightPrecision.Bf16 }.Where(p => p.IsSupported(caps)).Select(p => new StepCase(workload, p));
        }
    }

    string dir = null!;
    T5Checkpoint ckpt = null!;
    GpuContext ctx = null!;
    GpuBackend backend = null!;
    T5Weights weights = null!;
    PromptTrainer trainer = null!;
    List<EncodedExample> batch = null!;

    [GlobalSetup]
    public void Setup()
    {
        var w = Case.Workload;
        dir = Directory.CreateTempSubdirectory("vkprompt-bench-").FullName;
        RandomT5.Write(dir, w.Config, seed: 0);
        ckpt = T5Checkpoint.Open(dir);
        ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Profiling = false });
        backend = new GpuBackend(ctx) { AttentionFusion = EnvironmentSettings.Attention() };
        weights = new T5Weights(ckpt, backend, Case.Precision);
        trainer = new PromptTrainer(weights, SyntheticBatch.Prompt(w.Step.PromptLength, w.Config.DModel), new AdafactorSettings(), (float)w.Config.DropoutRate, seed: 0);
        batch = SyntheticBatch.Create(w.Step.Batch, w.Step.InputLength, w.Step.TargetLength, w.Config);
        // Records the step and builds its pipelines outside the measurement.
        trainer.TrainStep(batch, w.Step.Batch);
    }

    [Benchmark]
    public double Step() => trainer.TrainStep(batch, Case.Workload.Step.Batch);

    [GlobalCleanup]
    public void Cleanup()
    {
        trainer.Dispose();
        weights.Dispose();
        backend.Dispose();
        ctx.Dispose();
        ckpt.Dispose();
        Directory.Delete(dir, recursive: true);
    }
}
