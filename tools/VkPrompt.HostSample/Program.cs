using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VkPrompt.HostSample;
using VkPrompt.Model;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;
using VkPrompt.Training;

// A host that owns the GPU (issue 18): it renders a stand-in frame at a target rate on its own
// Vulkan device and lends the device to VkPrompt, which trains a soft prompt on the demo model in
// slices of a per-frame GPU budget. Measures frame times without training (baseline) and with
// training at each budget, the phases taking turns in blocks of frames. --help lists the options.

SampleOptions options;
try { options = SampleOptions.Parse(args); }
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    Console.Error.WriteLine(SampleOptions.Usage);
    return 2;
}
if (options.Help) { Console.WriteLine(SampleOptions.Usage); return 0; }

string assets = Path.Combine(AppContext.BaseDirectory, "demo");
string? madeModel = options.Model is null ? Path.Combine(Path.GetTempPath(), $"vkprompt-hostsample-{Environment.ProcessId}") : null;
try
{
    if (madeModel is not null) WriteDemoModel(madeModel, assets);
    var report = Run(options, options.Model ?? madeModel!, assets);
    if (options.Json) Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
    else PrintText(report);
    foreach (var error in report.ValidationErrors) Console.Error.WriteLine($"validation: {error}");
    return report.ValidationErrors.Count == 0 ? 0 : 1;
}
finally
{
    if (madeModel is not null && Directory.Exists(madeModel)) Directory.Delete(madeModel, true);
}

static SampleReport Run(SampleOptions o, string modelDir, string assets)
{
    var phases = new List<PhaseResult>();
    string deviceName;
    int librarySubmits;
    IReadOnlyList<string> errors;
    using (var host = new HostRenderer(o.Validation, o.Rounds))
    {
        deviceName = host.DeviceName;
        // Everything of the library is disposed before the host destroys its device. Profiling:
        // a whole (blocking) step also records per-op GPU times, which the warm-up step below
        // leaves as the estimates Advance cuts slices by.
        using (var ctx = GpuContext.Adopt(host.Declared(), new GpuOptions { Profiling = true }))
        using (var model = PromptModel.Open(modelDir, ctx))
        {
            var batches = TrainingBatches(model, Path.Combine(assets, "train.jsonl"), o.BatchSize);
            // A trainer per budget, each from the same prompt, so that every phase's steps are
            // sliced at its own budget alone.
            var trainers = o.BudgetsMs.Select(_ => model.Trainer(InitialPrompt(o.PromptLength, model.DModel))).ToList();
            try
            {
                var measured = new List<Phase> { new("baseline", null, host, null, batches, o.Fps) };
                measured.AddRange(o.BudgetsMs.Select((b, i) => new Phase($"training, budget {Ms(b)} ms", b, host, trainers[i], batches, o.Fps)));
                // Unmeasured: the first frames compile and warm caches, and one blocking step per
                // trainer records its step and measures its ops (as a host would do behind a
                // loading screen).
                new Phase("warm-up", null, host, null, batches, o.Fps).Frames(o.WarmupFrames);
                foreach (var trainer in trainers) trainer.TrainStep(batches[0]);
                for (int done = 0; done < o.Frames; done += o.Block)
                    foreach (var phase in measured) phase.Frames(Math.Min(o.Block, o.Frames - done));
                phases.AddRange(measured.Select(p => p.Result()));
            }
            finally
            {
                foreach (var trainer in trainers) trainer.Dispose();
            }
        }
        librarySubmits = host.LibrarySubmits;
        errors = host.ValidationErrors;
    }
    return new SampleReport(deviceName, Environment.ProcessorCount, o.Fps, o.Frames, o.Block, o.Rounds, o.BatchSize, o.PromptLength, o.Validation,
                            phases, librarySubmits, errors);
}

// The demo model's recipe (vkprompt demo's): a tiny T5 with random weights and the bundled tokenizer.
static void WriteDemoModel(string dir, string assets)
{
    var config = RandomT5.DemoConfig(T5Tokenizer.Load(assets).VocabSize);
    RandomT5.Write(dir, config, seed: 1, spieceModelPath: Path.Combine(assets, "spiece.model"));
}

// The demo's synthetic sentiment reviews, only those of the most common input length: every batch
// then has one shape, so the trainer keeps one recorded step whose per-op times the slicing has
// measured (a new shape is a new recording, whose first run goes op by op).
static List<EncodedExample[]> TrainingBatches(PromptModel model, string path, int batchSize)
{
    var encoder = model.Encoder();
    var examples = DataFile.Read(path).Select(encoder.Encode).ToList();
    var common = examples.GroupBy(e => (e.InputIds.Length, e.TargetIds.Length)).MaxBy(g => g.Count())!.ToList();
    if (common.Count < batchSize) throw new ArgumentException($"--batch-size {batchSize} is more than the {common.Count} examples of one shape");
    return common.Chunk(batchSize).Where(b => b.Length == batchSize).ToList();
}

static float[] InitialPrompt(int length, int dModel)
{
    var rng = new Random(1);
    return Enumerable.Range(0, length * dModel).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
}

static string Ms(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

static void PrintText(SampleReport r)
{
    Console.WriteLine($"device: {r.Device}, {r.Cores} CPU cores; frame: 1920x1080 RGBA8 compute pass ({r.Rounds} rounds) + copy at {r.Fps} fps; " +
                      $"{r.Frames} frames per phase, interleaved in blocks of {r.Block}; batch {r.BatchSize}, prompt {r.PromptLength} tokens{(r.Validation ? ", validation on" : "")}");
    Console.WriteLine();
    Console.WriteLine($"{"phase",-26} {"submit-to-fence ms",-25} {"frame ms",-25} {"late",5} {"steps",6} {"slices/step",12} {"steps/s",8} {"slice GPU ms",-16}");
    Console.WriteLine($"{"",-26} {"p50 / p99 / max",-25} {"p50 / p99 / max",-25} {"",5} {"",6} {"",12} {"",8} {"p50 / max",-16}");
    foreach (var p in r.Phases)
        Console.WriteLine($"{p.Phase,-26} {Triple(p.SubmitToFenceMs),-25} {Triple(p.FrameMs),-25} {p.LateFrames,5} {p.Steps,6} {Num(p.SlicesPerStep),12} {Num(p.StepsPerSecond),8} " +
                          (p.SliceGpuMs is { } s ? $"{Ms(s.P50)} / {Ms(s.Max)}" : "-"));
    Console.WriteLine();
    foreach (var p in r.Phases.Where(p => p.BudgetMs is not null))
        Console.WriteLine($"{p.Phase}: {p.OpsPerStep} ops per step, step GPU ms {(p.StepGpuMs is { } g ? Triple(g) : "-")} (p50 / p99 / max); " +
                          $"loss {Num(p.FirstLoss)} -> {Num(p.LastLoss)}; {p.OverBudgetSlices} slice(s) held one op longer than the budget" +
                          (p.OverBudgetOp is null ? "" : $" (e.g. {p.OverBudgetOp})") +
                          $"; host's copy of the prompt chained on the last step's ticket equals the trainer's: {p.PromptCopyMatches}");
    Console.WriteLine($"library submits under the host's queue lock: {r.LibrarySubmits}; validation errors: {r.ValidationErrors.Count}");

    static string Triple(Percentiles p) => $"{Ms(p.P50)} / {Ms(p.P99)} / {Ms(p.Max)}";
    static string Num(double? v) => v is double d ? d.ToString("0.##", CultureInfo.InvariantCulture) : "-";
}

/// <summary>
/// One phase of the measurement: frames without training (no trainer), or with a trainer of its
/// own whose steps advance one slice of <paramref name="budgetMs"/> per frame. Phases run interleaved
/// in blocks (<see cref="Frames"/> is called once per block), so a machine whose load drifts
/// (lavapipe shares the CPU with everything else) weighs on every phase alike.
/// </summary>
sealed class Phase(string name, double? budgetMs, HostRenderer host, PromptTrainer? trainer, List<EncodedExample[]> batches, int fps)
{
    readonly List<double> submitToFence = [], frameMs = [], sliceGpuMs = [], stepGpuMs = [], losses = [];
    readonly List<int> slicesPerStep = [];
    int late, overBudget, slices, nextBatch, stepOps;
    string? overBudgetOp;
    double seconds;
    TrainingStep? step;

    /// <summary>Runs <paramref name="count"/> frames: render, then (training) one slice of the
    /// current step; paced to the target rate by sleeping out the rest of each frame.</summary>
    public void Frames(int count)
    {
        double period = 1000.0 / fps;
        var clock = Stopwatch.StartNew();
        double deadline = 0;
        for (int f = 0; f < count; f++)
        {
            double start = clock.Elapsed.TotalMilliseconds;
            submitToFence.Add(host.Render());
            if (trainer is not null && budgetMs is double budget)
            {
                if (step is { IsComplete: true })
                {
                    losses.Add(step.Loss);
                    slicesPerStep.Add(slices);
                    sliceGpuMs.AddRange(step.SliceTimings.Select(t => t.GpuMs));
                    stepGpuMs.Add(step.SliceTimings.Sum(t => t.GpuMs));
                    step = null;
                }
                if (step is null)
                {
                    step = trainer.BeginStep(batches[nextBatch++ % batches.Count]);
                    slices = 0;
                }
                if (!step.IsSubmitted)
                {
                    var slice = step.Advance(TimeSpan.FromMilliseconds(budget));
                    slices++;
                    stepOps = slice.FirstOp + slice.Ops + slice.OpsLeft;
                    if (slice.OverBudgetOp is not null) { overBudget++; overBudgetOp ??= slice.OverBudgetOp; }
                }
            }
            double end = clock.Elapsed.TotalMilliseconds;
            frameMs.Add(end - start);
            deadline = Math.Max(deadline + period, start);
            if (end > deadline) late++;
            else Thread.Sleep(TimeSpan.FromMilliseconds(deadline - end));
        }
        seconds += clock.Elapsed.TotalSeconds;
        // Unmeasured, between blocks: the slices already submitted finish before another phase's
        // frames (the rest of the step waits for this phase's next block).
        step?.Ticket.Wait();
    }

    /// <summary>The phase's measurements; for a training phase, after the host's copy of the
    /// prompt is checked (<see cref="CopyPromptAfter"/>).</summary>
    public PhaseResult Result()
    {
        bool? promptCopyMatches = step is null ? null : CopyPromptAfter(step);
        step = null;
        bool training = trainer is not null;
        return new PhaseResult(name, budgetMs, Percentiles.Of(submitToFence), Percentiles.Of(frameMs), late, frameMs.Count,
            losses.Count, training ? stepOps : null, slicesPerStep.Count > 0 ? slicesPerStep.Average() : null, training ? losses.Count / seconds : null,
            stepGpuMs.Count > 0 ? Percentiles.Of(stepGpuMs) : null, sliceGpuMs.Count > 0 ? Percentiles.Of(sliceGpuMs) : null, overBudget, overBudgetOp,
            losses.Count > 0 ? losses[0] : null, losses.Count > 0 ? losses[^1] : null, promptCopyMatches);
    }

    /// <summary>After the measured frames: the step in flight is submitted whole, and the host
    /// copies the prompt out with its own submit, chained on the step's ticket (a wait-list entry
    /// of the host's vkQueueSubmit, not a wait on the CPU). Returns whether that copy equals the
    /// trainer's prompt, read once the step is complete.</summary>
    bool CopyPromptAfter(TrainingStep inFlight)
    {
        var ticket = inFlight.IsSubmitted ? inFlight.Ticket : inFlight.Submit();
        var copy = host.CopyOut(trainer!.PromptBuffer, ticket.AsWait());
        inFlight.Wait();
        return copy.AsSpan().SequenceEqual(trainer.Prompt());
    }
}

/// <summary>Nearest-rank percentiles of a phase's measurements, in milliseconds.</summary>
sealed record Percentiles(double P50, double P99, double Max)
{
    public static Percentiles Of(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        double At(double p) => sorted[Math.Max(0, (int)Math.Ceiling(p * sorted.Length) - 1)];
        return new Percentiles(Round(At(0.5)), Round(At(0.99)), Round(sorted[^1]));
    }

    static double Round(double ms) => Math.Round(ms, 3);
}

/// <summary>One phase: frames without training (budget null) or with training in slices of one budget.</summary>
/// <param name="LateFrames">Frames whose work (render plus the library's calls) overran the frame period.</param>
/// <param name="Frames">Frames measured.</param>
/// <param name="Steps">Training steps completed within the phase.</param>
/// <param name="OpsPerStep">The ops (dispatches, copies) of one recorded step.</param>
/// <param name="SlicesPerStep">Mean Advance calls per completed step.</param>
/// <param name="StepGpuMs">The measured GPU time of each completed step, its slices' sum.</param>
/// <param name="SliceGpuMs">The measured GPU time of the completed steps' slices (timestamps).</param>
/// <param name="OverBudgetSlices">Slices holding one op whose estimate alone exceeded the budget.</param>
/// <param name="PromptCopyMatches">Whether the host's copy of the prompt, chained on the last step's
/// ticket, equals the trainer's prompt (null: no step ran).</param>
sealed record PhaseResult(string Phase, double? BudgetMs, Percentiles SubmitToFenceMs, Percentiles FrameMs, int LateFrames, int Frames,
                          int Steps, int? OpsPerStep, double? SlicesPerStep, double? StepsPerSecond, Percentiles? StepGpuMs, Percentiles? SliceGpuMs, int OverBudgetSlices, string? OverBudgetOp,
                          double? FirstLoss, double? LastLoss, bool? PromptCopyMatches);

sealed record SampleReport(string Device, int Cores, int Fps, int Frames, int Block, uint Rounds, int BatchSize, int PromptLength, bool Validation,
                           IReadOnlyList<PhaseResult> Phases, int LibrarySubmits, IReadOnlyList<string> ValidationErrors);

/// <summary>The command line.</summary>
sealed record SampleOptions
{
    public int Fps { get; init; } = 60;
    public IReadOnlyList<double> BudgetsMs { get; init; } = [2];
    public int Frames { get; init; } = 300;
    public int WarmupFrames { get; init; } = 30;
    public int Block { get; init; } = 20;
    public uint Rounds { get; init; } = 8;
    public int BatchSize { get; init; } = 8;
    public int PromptLength { get; init; } = 20;
    public string? Model { get; init; }
    public bool Validation { get; init; }
    public bool Json { get; init; }
    public bool Help { get; init; }

    public const string Usage = """
        usage: VkPrompt.HostSample [options]
          --fps N             target frame rate (default 60)
          --budget-ms LIST    per-frame GPU budget(s) for training slices, comma-separated: one
                              training phase each, beside one baseline phase (default 2)
          --frames N          frames per phase (default 300)
          --block N           phases take turns every N frames (default 20)
          --warmup-frames N   unmeasured frames before the baseline (default 30)
          --rounds N          shading rounds per pixel: the frame's GPU cost (default 8)
          --batch-size N      training batch (default 8)
          --prompt-length N   soft prompt tokens (default 20)
          --model DIR         a T5 directory (default: the demo model, written to a temp dir)
          --validation        enable VK_LAYER_KHRONOS_validation; exit 1 on any error it reports
          --json              print the report as JSON
        """;

    public static SampleOptions Parse(string[] args)
    {
        var o = new SampleOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => ++i < args.Length ? args[i] : throw new ArgumentException($"{args[i - 1]} needs a value");
            int Positive() => int.TryParse(Value(), CultureInfo.InvariantCulture, out var v) && v > 0 ? v : throw new ArgumentException($"{args[i - 1]} needs a positive integer, got {args[i]}");
            o = args[i] switch
            {
                "--fps" => o with { Fps = Positive() },
                "--budget-ms" => o with { BudgetsMs = Value().Split(',').Select(ParseBudget).ToList() },
                "--frames" => o with { Frames = Positive() },
                "--warmup-frames" => o with { WarmupFrames = Positive() },
                "--block" => o with { Block = Positive() },
                "--rounds" => o with { Rounds = (uint)Positive() },
                "--batch-size" => o with { BatchSize = Positive() },
                "--prompt-length" => o with { PromptLength = Positive() },
                "--model" => o with { Model = Value() },
                "--validation" => o with { Validation = true },
                "--json" => o with { Json = true },
                "--help" or "-h" => o with { Help = true },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        return o;
    }

    static double ParseBudget(string s) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && double.IsFinite(v)
            ? v : throw new ArgumentException($"--budget-ms needs positive milliseconds, got {s}");
}
