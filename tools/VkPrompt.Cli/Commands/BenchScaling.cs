using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

/// <summary>
/// <c>vkprompt bench --devices A,B,...</c> and <c>vkprompt bench --distributed mpi</c>: how a
/// data-parallel training step scales over the workers, the devices of this process (a group of
/// one, <see cref="SingleProcess"/>) or of every rank of an MPI job (each rank's devices: --device,
/// or --devices' list). One worker alone
/// (rank 0's first device) first times the per-worker batch (the batch over the workers, rounded
/// up), the other ranks sleeping meanwhile (<see cref="MpiProcessGroup.Barrier"/>, so
/// they take no core from it); then every rank times the data-parallel step of the whole batch
/// (<see cref="DataParallelTrainer"/>: the shares, the gradients gathered in rank order, the
/// optimizer, the prompt broadcast), a step's time being the slowest rank's. Scaling efficiency
/// is the first over the second: 1 where N workers do N times the work in the time one takes
/// for its share, less by what the gradient exchange, the waits for the slowest worker and any
/// sharing of the hardware cost.
/// </summary>
internal static class BenchScaling
{
    public const string Schema = "vkprompt-bench-scaling/1";

    public const string EfficiencyDefinition =
        "singleWorkerStepMs.median / stepMs.median: the step time of one worker alone on the per-worker batch (ceil(batch / workers) examples) " +
        "over that of all workers on the whole batch, every step timed by its slowest rank; 1 is perfect scaling";

    public static int Run(BenchSettings s, IProcessGroup group, IAnsiConsole console, Action<string>? log)
    {
        // Every rank writes its own random model of a named shape (the same seed, the same
        // weights) in a temporary directory of its own: a named shape needs no shared filesystem.
        string? temporary = null;
        try
        {
            string dir = s.Directory ?? (temporary = Directory.CreateTempSubdirectory("vkprompt-bench-").FullName);
            if (temporary is not null)
            {
                console.WriteLine($"writing a random-weight {s.Name} to a temporary directory on each rank ...");
                RandomT5.Write(temporary, T5Config.Named(s.Name), seed: 0);
            }
            using var ckpt = T5Checkpoint.Open(dir);
            var report = Measure(ckpt, s, group, console, log);
            if (group.Rank != 0) return Cli.Ok;
            string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
            console.WriteLine($"device (rank 0): {report.Device.Name} ({report.Device.Driver})");
            console.WriteLine($"one worker, batch {report.PerWorkerBatch}: median {F(report.SingleWorkerStepMs.Median)} ms (min {F(report.SingleWorkerStepMs.Min)}, max {F(report.SingleWorkerStepMs.Max)})");
            string workers = report.Workers == 1 ? "1 worker" : $"{report.Workers} workers";
            console.WriteLine($"{workers}, batch {report.Batch.BatchSize}: median {F(report.StepMs.Median)} ms (min {F(report.StepMs.Min)}, max {F(report.StepMs.Max)})");
            console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"scaling efficiency: {report.Efficiency:F3} ({report.ExamplesPerSecond:F2} examples/s on {workers})"));
            foreach (var note in report.Notes) console.MarkupLineInterpolated($"[yellow]note[/]: {note}");
            AtomicFile.WriteAllText(s.JsonPath, JsonSerializer.Serialize(report, CliJson.Default.BenchScalingReport) + "\n");
            console.WriteLine($"wrote {s.JsonPath}");
            return Cli.Ok;
        }
        finally
        {
            if (temporary is not null) Directory.Delete(temporary, recursive: true);
        }
    }

    static BenchScalingReport Measure(T5Checkpoint ckpt, BenchSettings s, IProcessGroup group, IAnsiConsole console, Action<string>? log)
    {
        var c = ckpt.Config;
        var shape = s.Batch;
        var counts = new double[group.Size];
        group.AllGather([s.Devices.Count], counts);
        int workers = (int)counts.Sum();
        int perWorker = (shape.Batch + workers - 1) / workers;
        var examples = SyntheticBatch.Create(shape.Batch, shape.InputLength, shape.TargetLength, c);
        using var devices = BenchReplicas.Open(ckpt, s, profile: false, log);
        return Measure(s, group, console, c, workers, perWorker, examples, devices.Contexts, devices.Replicas, devices.Precision);
    }

    static BenchScalingReport Measure(BenchSettings s, IProcessGroup group, IAnsiConsole console, T5Config c, int workers, int perWorker,
                                      List<EncodedExample> examples, List<GpuContext> contexts, List<T5Weights> replicas, WeightPrecision precision)
    {
        var shape = s.Batch;
        var ctx = contexts[0];
        var activations = s.Recompute ? ActivationMode.Recompute : ActivationMode.Store;
        var prompt = SyntheticBatch.Prompt(shape.PromptLength, c.DModel);
        float dropout = (float)c.DropoutRate;

        console.WriteLine($"timing one worker on batch {perWorker}: {s.Warmup} warm-up step(s), then {s.Steps} timed step(s) ...");
        List<double> single = [];
        if (group.Rank == 0)
        {
            using var alone = new PromptTrainer(replicas[0], prompt, new AdafactorSettings(), dropout, seed: 0, activations);
            single = Time(alone, examples.Take(perWorker).ToList(), perWorker, s);
        }
        (group as MpiProcessGroup)?.Barrier(TimeSpan.FromMilliseconds(20));

        console.WriteLine($"timing {workers} worker(s) on batch {shape.Batch} ...");
        List<double> mine;
        using (var parallel = new DataParallelTrainer(replicas, group, prompt, new AdafactorSettings(), dropout, seed: 0, activations))
            mine = Time(parallel, examples, shape.Batch, s);
        // A step is as slow as its slowest rank (one list of times per rank, whatever its devices).
        var all = new double[group.Size * mine.Count];
        group.AllGather(mine.ToArray(), all);
        var stepMs = Enumerable.Range(0, mine.Count).Select(i => Enumerable.Range(0, group.Size).Max(r => all[r * mine.Count + i])).ToList();

        if (contexts.SelectMany(x => x.Validation.Errors).FirstOrDefault() is { } error)
            throw new InvalidOperationException($"Vulkan validation error(s); the first: {error}");
        var notes = new List<string>();
        if (ctx.Options.Validation) notes.Add("the Vulkan validation layer was on (VKPROMPT_VALIDATION=1): these times are not representative");
        if (ctx.Capabilities.DeviceType == "cpu")
            notes.Add("a CPU device (lavapipe): ranks on one machine share its cores, so N workers cannot be N times as fast there");
        var caps = ctx.Capabilities;
        var singleStats = StepStats.Of(single.Count > 0 ? single : [double.NaN]);
        var stats = StepStats.Of(stepMs);
        return new BenchScalingReport(
            Schema, Cli.Version, s.CommandLine,
            DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            BenchDevice.Of(caps),
            group is MpiProcessGroup ? "mpi" : "none", workers, s.Name, new BenchBatch(shape.Batch, shape.InputLength, shape.TargetLength, shape.PromptLength), perWorker,
            precision.Name(), s.Recompute, s.Warmup, s.Steps,
            singleStats, single, stats, stepMs, singleStats.Median / stats.Median, EfficiencyDefinition,
            shape.Batch / (stats.Median / 1e3), notes);
    }

    /// <summary>The wall time of each timed step, after the warm-up steps.</summary>
    static List<double> Time(IStepTrainer trainer, List<EncodedExample> batch, int batchSize, BenchSettings s)
    {
        for (int i = 0; i < s.Warmup; i++) trainer.TrainStep(batch, batchSize);
        var times = new List<double>();
        for (int i = 0; i < s.Steps; i++)
        {
            var clock = Stopwatch.StartNew();
            trainer.TrainStep(batch, batchSize);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        return times;
    }
}

/// <summary>What <c>vkprompt bench --distributed mpi</c> writes (docs/benchmarks.md).</summary>
internal sealed record BenchScalingReport(
    string Schema, string Implementation, string Command, string Timestamp, BenchDevice Device,
    string Distributed, int Workers, string Shape, BenchBatch Batch, int PerWorkerBatch,
    string Precision, bool Recompute, int WarmupSteps, int Steps,
    StepStats SingleWorkerStepMs, IReadOnlyList<double> SingleWorkerStepTimesMs, StepStats StepMs, IReadOnlyList<double> StepTimesMs,
    double Efficiency, string EfficiencyDefinition, double ExamplesPerSecond, IReadOnlyList<string> Notes);
