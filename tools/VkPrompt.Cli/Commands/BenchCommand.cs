using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

/// <summary>
/// <c>vkprompt bench</c>: the training step of <c>vkprompt train</c> on a random-weight model of a
/// given shape and synthetic token ids, timed, with a per-phase and per-op breakdown from GPU
/// timestamps, written as JSON whose fields tools/peer/peer_bench.py writes too
/// (docs/benchmarks.md).
/// </summary>
internal static class BenchCommand
{
    public const string Schema = "vkprompt-bench/1";
    /// <summary>The named shapes (T5Config.Named), as --help describes them to both bench
    /// commands and make-model.</summary>
    internal const string ShapeNamesHelp =
        "t5-small (original T5), t5-base, t5-large, t5-xl or t5-xxl (T5 v1.1 LM-adapted shapes), ul2 (google/ul2's: gated-silu, d_kv 256, 16 heads, " +
        "d_model 4096, 32+32 layers), umt5-base (google/umt5-base's: a position bias per layer, 256384-token vocabulary) " +
        "or byt5-small (google/byt5-small's: d_model 1472, 12 encoder and 4 decoder layers, 384 byte tokens)";

    public static Command Create()
    {
        var shape = ShapeOption("built with random weights in a temporary directory", "to load");
        var batch = ModelOptions.BatchSize(32);
        var (input, target, promptLength) = LengthOptions();
        var precision = ModelOptions.Precision();
        var steps = new Option<int>("--steps") { Description = "Timed steps; the report gives their median, min and max. Default: 2 (a t5-small step at batch 8 takes 35 to 45 s on lavapipe with 2 cores).", DefaultValueFactory = _ => 2 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps first (the first records the step and builds the pipelines). Default: 1.", DefaultValueFactory = _ => 1 };
        var noProfile = new Option<bool>("--no-profile")
        {
            Description = "Time the steps without a GPU timestamp around every dispatch, and so without the per-phase and per-op breakdown " +
                          "(to see what the timestamps cost; on a GPU they keep independent dispatches from overlapping).",
        };
        var recompute = new Option<bool>("--recompute") { Description = "Recompute block activations in the backward pass instead of storing them (much less memory, more time)." };
        var json = new Option<string?>("--json") { HelpName = "FILE", Description = "Where to write the JSON report. Default: vkprompt-bench-SHAPE-bB-inL.json in the current directory." };
        var device = Cli.DeviceOption();
        var devices = Cli.DevicesOption();
        var attention = ModelOptions.Attention();
        var activations = ModelOptions.Activations();
        activations.Description += " With 16-bit activations a single-device bench also runs one untimed step with fp32 activations after the timed ones, " +
                                   "and reports the peak device memory of both (memoryByActivations), measured in the same run.";
        var distributed = Distributed.Option();
        distributed.Description += " bench --distributed mpi, like bench --devices with more than one device, times one worker alone on its share of --batch-size, " +
                                   "then every worker on the whole batch, and reports the step times and the scaling efficiency (docs/benchmarks.md), without the per-op breakdown.";
        var cmd = new Command("bench",
            "Time the prompt-tuning training step (forward, prompt-only backward, Adafactor) on a random-weight T5 with synthetic token ids: " +
            "step time, examples/s, tokens/s, achieved TFLOP/s, peak device memory, a per-phase and per-op GPU time breakdown and the device's capabilities, " +
            "printed and written as JSON (docs/benchmarks.md). 'vkprompt bench matmul' times each matrix product of the step alone, 'vkprompt bench peak' the matrix units' own rate.")
        {
            shape, batch, input, target, promptLength, precision, steps, warmup, noProfile, recompute, json, device, devices, attention, activations, distributed,
        };
        cmd.SetAction(parse =>
        {
            int b = ModelOptions.Positive(parse, batch), l = LengthArg(parse, input), t = LengthArg(parse, target);
            int p = ModelOptions.Positive(parse, promptLength), n = ModelOptions.Positive(parse, steps);
            int w = NonNegative(parse, warmup);
            var devs = Cli.ReadDevices(parse, device, devices);
            if (devs.Any(d => d.Equals("cpu", StringComparison.OrdinalIgnoreCase)))
                throw new UsageException("bench measures Vulkan devices; --device cpu (the C# reference backend) is not benchmarked");
            var (name, directory) = ReadShape(parse, shape);
            // Before a random model of a named shape is written (t5-xxl's is tens of GB), and for
            // every way bench runs: one device, several, MPI's ranks.
            RefuseTooLarge(new BatchShape(b, l, t, p), ConfigOf(name, directory));
            bool mpi = parse.GetValue(distributed) == Distributed.Mpi;
            string JsonPath(string fallback) => ModelOptions.OutputFile(json.Name, parse.GetValue(json) ?? fallback, OutputKind.Report, (shape.Name, directory));
            var settings = new BenchSettings(name, directory, new BatchShape(b, l, t, p), parse.GetValue(precision)!, n, w, !parse.GetValue(noProfile), parse.GetValue(recompute), devs,
                ModelOptions.ReadAttention(parse, attention),
                mpi ? "" : JsonPath($"vkprompt-bench-{name}-b{b}-in{l}{(devs.Count > 1 ? $"-devices{devs.Count}" : "")}.json"),
                "vkprompt " + string.Join(' ', parse.Tokens.Select(token => token.Value)), ModelOptions.ReadActivations(parse, activations));
            if (mpi)
                return Distributed.Run(parse, distributed, group => BenchScaling.Run(
                    settings with
                    {
                        Devices = Distributed.Devices(devs, group),
                        JsonPath = JsonPath($"vkprompt-bench-{name}-b{b}-in{l}-mpi{group.Size}.json"),
                    }, group, Distributed.Console(parse, group), Distributed.Log(parse, group)));
            // Several devices in this process: the same scaling report as over MPI's ranks, one
            // process being a group of one.
            if (devs.Count > 1)
                return BenchScaling.Run(settings, new SingleProcess(), Cli.Console(parse), ModelOptions.Log(parse));
            return Run(settings, Cli.Console(parse), ModelOptions.Log(parse));
        });
        // `bench matmul`: its own options (bench's are not recursive, so --shape is asked of each).
        cmd.Subcommands.Add(BenchMatMulCommand.Create());
        cmd.Subcommands.Add(BenchPeakCommand.Create());
        return cmd;
    }

    /// <summary>--shape, as both bench commands take it: a named shape or a model directory.</summary>
    /// <param name="named">what the command does with a named shape, if more than take its sizes.</param>
    /// <param name="directory">what it does with a directory.</param>
    internal static Option<string> ShapeOption(string? named, string directory) => new("--shape")
    {
        HelpName = "NAME|DIR",
        Description = $"{ShapeNamesHelp}{(named is null ? "" : ", " + named)}; or a Hugging Face T5 directory {directory}.",
        Required = true,
    };

    /// <summary>The --shape given: its name (a named shape's, else the directory's), and the
    /// model directory, null for a named shape.</summary>
    internal static (string Name, string? Directory) ReadShape(ParseResult parse, Option<string> option)
    {
        string shape = parse.GetValue(option)!;
        if (T5Config.ShapeNames.Contains(shape)) return (shape, null);
        if (Directory.Exists(shape)) return (Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(shape))), shape);
        throw new UsageException($"{option.Name} '{shape}' is neither {string.Join(", ", T5Config.ShapeNames)} nor a model directory");
    }

    /// <summary>--input-length, --target-length and --prompt-length, as both bench commands take them.</summary>
    internal static (Option<int> Input, Option<int> Target, Option<int> Prompt) LengthOptions() => (
        new Option<int>("--input-length") { Description = "Input tokens per example, the prompt not included; a multiple of 8. Default: 512.", DefaultValueFactory = _ => 512 },
        new Option<int>("--target-length") { Description = "Target tokens per example; a multiple of 8. Default: 8.", DefaultValueFactory = _ => 8 },
        new Option<int>("--prompt-length") { Description = "Soft prompt length P (the paper's 100 by default): the encoder runs over batch x (input + P) tokens.", DefaultValueFactory = _ => 100 });

    /// <summary>The configuration of what <see cref="ReadShape"/> read: a named shape's, or the
    /// model directory's config.json.</summary>
    internal static T5Config ConfigOf(string name, string? directory) =>
        directory is null ? T5Config.Named(name) : T5Config.Load(Path.Combine(directory, "config.json"));

    /// <summary>Refuses a shape whose largest activation a buffer cannot index, before anything
    /// is written or allocated (longs throughout: each size may be near int's range); every bench
    /// command's check, as the run's is <c>TrainingRun</c>'s.</summary>
    internal static void RefuseTooLarge(BatchShape shape, T5Config c)
    {
        long elements = BatchShape.LargestActivation(shape.Batch, (long)shape.PromptLength + shape.InputLength, shape.TargetLength, c);
        if (elements > BatchShape.MaxElements)
            throw new UsageException($"--batch-size {shape.Batch} with --input-length {shape.InputLength}, --target-length {shape.TargetLength} and --prompt-length {shape.PromptLength} needs activations of {elements} elements, more than the {BatchShape.MaxElements} a buffer can index: make them smaller");
    }

    internal static int LengthArg(ParseResult parse, Option<int> option)
    {
        int v = ModelOptions.Positive(parse, option);
        // A batch pads its lengths to multiples of this; the peer would time the unpadded lengths.
        if (v % HostBatch.LengthQuantum != 0)
            throw new UsageException($"{option.Name} must be a multiple of {HostBatch.LengthQuantum} (batches are padded to that), got {v}");
        return v;
    }

    static int NonNegative(ParseResult parse, Option<int> option)
    {
        int v = parse.GetValue(option);
        if (v < 0) throw new UsageException($"{option.Name} must not be negative, got {v}");
        return v;
    }

    static int Run(BenchSettings s, IAnsiConsole console, Action<string>? log)
    {
        string? temporary = null;
        try
        {
            string dir;
            if (s.Directory is { } given) dir = given;
            else
            {
                temporary = Directory.CreateTempSubdirectory("vkprompt-bench-").FullName;
                console.WriteLine($"writing a random-weight {s.Name} to {temporary} ...");
                RandomT5.Write(temporary, T5Config.Named(s.Name), seed: 0);
                dir = temporary;
            }

            using var ckpt = T5Checkpoint.Open(dir);
            var report = Measure(ckpt, s, console, log);
            Print(console, report);
            AtomicFile.WriteAllText(s.JsonPath, JsonSerializer.Serialize(report, CliJson.Default.BenchReport) + "\n");
            console.WriteLine($"wrote {s.JsonPath}");
            return Cli.Ok;
        }
        finally
        {
            if (temporary is not null) Directory.Delete(temporary, recursive: true);
        }
    }

    static BenchReport Measure(T5Checkpoint ckpt, BenchSettings s, IAnsiConsole console, Action<string>? log)
    {
        var c = ckpt.Config;
        var shape = s.Batch;
        var examples = SyntheticBatch.Create(shape.Batch, shape.InputLength, shape.TargetLength, c);
        long parameters = T5Names.All(c).Sum(t => ckpt.Info(t.Name).ElementCount);
        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{s.Name}: {parameters / 1e6:F1}M parameters; batch {shape.Batch}, input {shape.InputLength} + prompt {shape.PromptLength}, target {shape.TargetLength}; {(s.Recompute ? "recomputed" : "stored")} activations"));

        console.WriteLine($"timing: {s.Warmup} warm-up step(s), then {s.Steps} timed step(s){(s.Profile ? " with GPU timestamps" : "")} ...");
        var run = RunSteps(ckpt, s, examples, log);
        var notes = run.KernelNotes;
        if (run.Validation) notes.Add("the Vulkan validation layer was on (VKPROMPT_VALIDATION=1): these times are not representative");
        Breakdown? breakdown = null;
        if (run.Timings.Count > 0) breakdown = Summarize(run.Timings);
        else if (s.Profile) notes.Add("the device records no timestamps on its compute queue: no breakdown");

        var stats = StepStats.Of(run.StepMs);
        double median = stats.Median;
        long tokens = (long)shape.Batch * (shape.InputLength + shape.TargetLength);
        long forward = StepFlops.Forward(c, shape), backward = StepFlops.Backward(c, shape);
        var caps = run.Capabilities;
        return new BenchReport(
            Schema,
            Cli.Version,
            s.CommandLine,
            DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            BenchDevice.Of(caps),
            caps,
            run.Plan,
            new BenchModel(s.Name, parameters, c.DModel, c.DFf, c.NumHeads, c.DKv, c.NumLayers, c.NumDecoderLayers, c.VocabSize,
                           c.FeedForwardProjName, c.TieWordEmbeddings),
            new BenchBatch(shape.Batch, shape.InputLength, shape.TargetLength, shape.PromptLength),
            run.Precision.Name(), run.Activations.Name() + (run.KernelNotes.Any(n => n.Contains("matrix units (")) ? ", fp16 product operands" : ""), run.Attention, s.Recompute, c.DropoutRate, s.Warmup, s.Steps, breakdown is not null,
            run.TuneMatMul,
            stats, run.StepMs,
            shape.Batch / (median / 1e3), tokens / (median / 1e3), tokens,
            forward, backward, forward + backward, (forward + backward) / (median / 1e3) / 1e12,
            run.PeakBytes, run.ReservedBytes, run.WeightBytes, run.MemoryByActivations,
            new LossStats(run.Losses[0], run.Losses[^1]),
            breakdown, notes);
    }

    sealed record StepRun(DeviceCapabilities Capabilities, JsonObject Plan, WeightPrecision Precision, ActivationPrecision Activations, BenchAttention Attention, bool Validation,
                          List<double> StepMs, List<double> Losses, List<List<DispatchTiming>> Timings, long PeakBytes, long ReservedBytes, long WeightBytes,
                          List<ActivationMemory> MemoryByActivations, List<string> KernelNotes, bool TuneMatMul);

    /// <summary>Loads the weights on a context of their own (profiled or not for its whole life)
    /// and runs the steps.</summary>
    static StepRun RunSteps(T5Checkpoint ckpt, BenchSettings s, List<EncodedExample> examples, Action<string>? log)
    {
        using var devices = BenchReplicas.Open(ckpt, s, profile: s.Profile, log);
        var (contexts, replicas, precision, stored) = (devices.Contexts, devices.Replicas, devices.Precision, devices.Activations);
        var ctx = contexts[0];
        long weightBytes = ctx.Memory.BytesInUse;
        var prompt = SyntheticBatch.Prompt(s.Batch.PromptLength, ckpt.Config.DModel);
        var activations = s.Recompute ? ActivationMode.Recompute : ActivationMode.Store;
        float dropout = (float)ckpt.Config.DropoutRate;
        var trainer = new PromptTrainer(replicas[0], prompt, new AdafactorSettings(), dropout, seed: 0, activations);
        for (int i = 0; i < s.Warmup; i++) trainer.TrainStep(examples, s.Batch.Batch);
        var times = new List<double>();
        var losses = new List<double>();
        var timings = new List<List<DispatchTiming>>();
        for (int i = 0; i < s.Steps; i++)
        {
            var clock = Stopwatch.StartNew();
            losses.Add(trainer.TrainStep(examples, s.Batch.Batch));
            times.Add(clock.Elapsed.TotalMilliseconds);
            if (trainer.LastStepTimings.Count > 0) timings.Add(trainer.LastStepTimings.ToList());
        }
        // Steps is positive, so a step ran; auto decides per attention, so the report says what each one did.
        var (encoderSelf, decoderSelf, cross) = trainer.LastStepFusedAttention!.Value;
        trainer.Dispose();
        var memory = new List<ActivationMemory> { new(stored.Name(), ctx.Memory.PeakBytesInUse) };
        if (stored != ActivationPrecision.Fp32)
        {
            // The saving, measured: the same step once more with fp32 activations on the same
            // weights, its peak counted from what the weights alone hold.
            var backend = replicas[0].Backend;
            backend.Activations = ActivationPrecision.Fp32;
            try
            {
                ctx.Memory.ResetPeak();
                using (var fp32 = new PromptTrainer(replicas[0], prompt, new AdafactorSettings(), dropout, seed: 0, activations))
                    fp32.TrainStep(examples, s.Batch.Batch);
                memory.Add(new(ActivationPrecision.Fp32.Name(), ctx.Memory.PeakBytesInUse));
            }
            finally { backend.Activations = stored; }
        }
        // As in ModelSession: with VKPROMPT_VALIDATION=1 a validation error is a bug, and the command fails.
        var errors = contexts.SelectMany(c => c.Validation.Errors).ToList();
        if (errors.Count > 0)
            throw new InvalidOperationException($"{errors.Count} Vulkan validation error(s); the first: {errors[0]}");
        var attention = new BenchAttention(s.Attention.Name(), FusedName(encoderSelf), FusedName(decoderSelf), FusedName(cross));
        var notes = KernelNotes(ctx, precision);
        if ((encoderSelf || decoderSelf || cross) && FusedAttentionKernel.MatrixUnitsTiling(ctx, ckpt.Config.DKv, backward: false) is { } forward
            && FusedAttentionKernel.MatrixUnitsTiling(ctx, ckpt.Config.DKv, backward: true) is { } backward)
            notes.Add($"fused attention ran on the matrix units (fused_attention_coopmat, VKPROMPT_MATRIX_UNITS=all): {forward.Warps} subgroups of 16 rows a workgroup, " +
                      $"blocks of {forward.Block} keys forward and {backward.Block} rows backward");
        return new StepRun(ctx.Capabilities, ctx.Plan.ToJson(), precision, stored, attention, ctx.Options.Validation, times, losses, timings, memory[0].PeakMemoryBytes, ctx.Memory.BytesReserved,
                           weightBytes, memory, notes, MatMulTuner.Enabled(ctx));
    }

    /// <summary>Which product kernels ran and with which tile shapes, so runs that differ only
    /// in a switch (VKPROMPT_MATRIX_UNITS=0, VKPROMPT_*_TILING, VKPROMPT_MATMUL_TUNE) can be told apart.</summary>
    static List<string> KernelNotes(GpuContext ctx, WeightPrecision precision)
    {
        var notes = new List<string>();
        // int8 weights go to the matrix units where 16-bit ones go, in the products that read them as A·Bᵀ.
        bool halfWeights = precision != WeightPrecision.Fp32;
        if (precision == WeightPrecision.Int8)
            notes.Add(ctx.UsesMatrixUnits
                ? "products reading int8 weights as A·Bᵀ (the forward's) multiplied their bytes, exact in fp16, and scaled each column by its row's scale; " +
                  "those reading them as A·B (the backward's dX = dY·W) ran matmul_int8, each weight widened with its scale as it was loaded"
                : "products with int8 weights ran matmul_int8, each weight widened with its row's scale as it was loaded");
        bool tuned = MatMulTuner.Enabled(ctx);
        string Tiling(string? forced) => forced ?? (tuned ? "tuned per product before the first step (VKPROMPT_MATMUL_TUNE=1; the log has the times)" : "default");
        // The fragments' type (VKPROMPT_MATRIX_UNITS_OPERANDS).
        string fragments = ctx.Plan.Bf16Fragments ? "bf16" : "fp16";
        if (halfWeights && ctx.MatrixUnitsEmulated)
            notes.Add($"products with {precision.Name()} weights ran the matrix-units kernel with its matrix operations emulated (VKPROMPT_MATRIX_UNITS=emulate), " +
                      $"their activation operand rounded to {fragments}; tiling {Tiling(ctx.Options.MatrixUnitsTiling)}");
        else if (halfWeights && ctx.UsesMatrixUnits)
            notes.Add($"products with {precision.Name()} weights ran on the matrix units ({ctx.MatrixUnits.Extension()}), their activation operand rounded to {fragments}; " +
                      $"tiling {Tiling(ctx.Options.MatrixUnitsTiling)}");
        else if (halfWeights && (ctx.Capabilities.CooperativeMatrixKhr || ctx.Capabilities.CooperativeMatrixNv))
            notes.Add("the matrix units were not used (VKPROMPT_MATRIX_UNITS=0 turned them off)");
        if (ctx.Plan.StoredPrecision(precision) is var stored && stored != precision)
            notes.Add($"{precision.Name()} weights were stored as the {stored.Name()} halves the matrix units multiply, converted once on upload (VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS=0 keeps them {precision.Name()})");
        else if (halfWeights && ctx.UsesMatrixUnits && precision == WeightPrecision.Bf16)
            notes.Add(ctx.Plan.Bf16Fragments
                ? "bf16 weights were kept bf16, which the matrix units' bf16 fragments take as stored (VKPROMPT_MATRIX_UNITS_OPERANDS=fp16 compares fp16 fragments)"
                : "bf16 weights were kept bf16 and converted to fp16 as the matrix-unit products staged them (VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS=0)");
        if (ctx.UsesMatrixUnits && ctx.Plan.Bf16Fragments && (halfWeights || ctx.Options.MatrixUnitsAllProducts))
            notes.Add("matrix-unit products multiplied bf16 fragments, rounding fp32 operands to bf16 as they staged them (no 16-bit copies)");
        else if (ctx.UsesMatrixUnits && (halfWeights || ctx.Options.MatrixUnitsAllProducts))
            notes.Add(ctx.Options.MatrixUnitsHalfActivations
                ? "matrix-unit products at least 256 columns wide read a 16-bit copy of their activation operand, one conversion (to_half) per activation shared by the products that read it"
                : "matrix-unit products read their fp32 activation operand and round it as they stage it (VKPROMPT_MATRIX_UNITS_HALF_A=0)");
        if (ctx.MatrixUnits == MatrixUnits.Nv2)
            notes.Add("VKPROMPT_MATRIX_UNITS=nv2: matrix-unit products whose operands each have a unit stride ran the workgroup-scope kernel (matmul_coopmat_nv2), " +
                      "reading 16-bit copies of every fp32 operand; the others ran the KHR kernel");
        if (ctx.UsesMatrixUnits && ctx.Options.MatrixUnitsAllProducts)
            notes.Add($"VKPROMPT_MATRIX_UNITS=all: every product ran on the matrix units ({ctx.MatrixUnits.Extension()}), fp32 operands rounded to {fragments} too (fused attention's to fp16)");
        if (!(ctx.UsesMatrixUnits && (halfWeights || ctx.Options.MatrixUnitsAllProducts)) || ctx.Options.MatMulTiling is not null)
            notes.Add($"portable product tiling {Tiling(ctx.Options.MatMulTiling)}");
        if (!ctx.Options.SubgroupRows)
            notes.Add("VKPROMPT_ROW_SUBGROUP=0: every softmax row took a workgroup rather than a subgroup");
        if (ctx.Options.RowLocalSize is { } rowLocal)
            notes.Add($"VKPROMPT_ROW_LOCAL_SIZE={rowLocal}: the row kernels' workgroups had {rowLocal} invocations");
        if (ctx.Options.TuneMatMul && !tuned)
            notes.Add("VKPROMPT_MATMUL_TUNE=1 does nothing on a CPU device: it runs the streamed product, whose one tiling leaves nothing to choose");
        return notes;
    }

    /// <summary>Per-step means of the GPU time by phase (in the order the step runs them), by
    /// kernel (largest first), and by kernel within each phase. Ops outside any phase would
    /// show as "other".</summary>
    static Breakdown Summarize(List<List<DispatchTiming>> steps)
    {
        int n = steps.Count;
        var all = steps.SelectMany(t => t).ToList();
        double gpu = all.Sum(t => t.Milliseconds) / n;
        List<TimeShare> Shares(IEnumerable<DispatchTiming> timings, Func<DispatchTiming, string> key) => timings
            .GroupBy(key)
            .Select(g => new TimeShare(g.Key, g.Count() / n, g.Sum(t => t.Milliseconds) / n, g.Sum(t => t.Milliseconds) / n / gpu))
            .ToList();
        var phases = Shares(all, t => t.Phase.Length == 0 ? "other" : t.Phase)
            .Select(p => p with { Ops = Shares(all.Where(t => (t.Phase.Length == 0 ? "other" : t.Phase) == p.Name), t => t.Label).OrderByDescending(o => o.Ms).ToList() })
            .ToList();
        return new Breakdown(n, gpu, phases, Shares(all, t => t.Label).OrderByDescending(o => o.Ms).ToList());
    }

    static void Print(IAnsiConsole console, BenchReport r)
    {
        string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
        const double MiB = 1024 * 1024;
        console.WriteLine($"device: {r.Device.Name} ({r.Device.Driver})");
        if (r.Capabilities is { } c)
            console.WriteLine($"capabilities: {c.DeviceType}, subgroup {c.SubgroupSize}, float16 {YesNo(c.ShaderFloat16)}, bfloat16 {YesNo(c.BFloat16)}, " +
                              $"matrix units: {c.CooperativeMatrixExtensions()} (the whole report is in the JSON)");
        console.WriteLine($"step time: median {F(r.StepMs.Median, "F1")} ms (min {F(r.StepMs.Min, "F1")}, max {F(r.StepMs.Max, "F1")}) over {r.Steps} step(s)");
        console.WriteLine($"throughput: {F(r.ExamplesPerSecond, "F2")} examples/s, {F(r.TokensPerSecond, "F1")} tokens/s ({r.TokensPerStep} input and target tokens per step)");
        console.WriteLine($"compute: {F(r.FlopsPerStep / 1e12, "F3")} TFLOP per step (forward {F(r.ForwardFlops / 1e12, "F3")}, backward {F(r.BackwardFlops / 1e12, "F3")}); achieved {F(r.Tflops, "F3")} TFLOP/s");
        console.WriteLine($"weights: {r.Precision}, activations and sums: {r.ActivationPrecision}");
        console.WriteLine($"attention: {r.Attention}");
        console.WriteLine($"device memory: peak {F(r.PeakMemoryBytes / MiB, "F1")} MiB in use (weights {F(r.WeightMemoryBytes / MiB, "F1")} MiB), {F(r.ReservedMemoryBytes / MiB, "F1")} MiB reserved");
        if (r.MemoryByActivations.Count > 1)
        {
            var (used, fp32) = (r.MemoryByActivations[0], r.MemoryByActivations[^1]);
            console.WriteLine($"activation memory: the step's peak is {F(used.PeakMemoryBytes / MiB, "F1")} MiB with {used.Activations} activations and {F(fp32.PeakMemoryBytes / MiB, "F1")} MiB with {fp32.Activations} " +
                              $"(one more step, same run): {F(100.0 * (fp32.PeakMemoryBytes - used.PeakMemoryBytes) / fp32.PeakMemoryBytes, "F1")} % less");
        }
        console.WriteLine($"loss: {F(r.Loss.First, "F4")} first, {F(r.Loss.Last, "F4")} last timed step");
        foreach (var note in r.Notes) console.MarkupLineInterpolated($"[yellow]note[/]: {note}");
        if (r.Breakdown is not { } b) return;
        console.WriteLine($"GPU time in dispatches: {F(b.GpuMs, "F1")} ms per step (mean of {b.Steps} step(s)); by phase and by kernel:");
        console.Write(Table("phase", b.Phases, F));
        console.Write(Table("op", b.Ops, F));
    }

    static string YesNo(bool b) => b ? "yes" : "no";

    static string FusedName(bool fused) => fused ? "fused" : "unfused";

    static Table Table(string what, IReadOnlyList<TimeShare> rows, Func<double, string, string> f)
    {
        var table = new Table().AddColumns(what, "dispatches", "ms", "share");
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Name), r.Count.ToString(CultureInfo.InvariantCulture), f(r.Ms, "F2"), f(100 * r.Share, "F1") + " %");
        return table;
    }
}

/// <summary>The frozen model on each device a bench names (--device, or --devices' list), each on
/// a context of its own, freed together.</summary>
internal sealed class BenchReplicas : IDisposable
{
    public List<GpuContext> Contexts { get; } = [];
    public List<T5Weights> Replicas { get; } = [];
    public WeightPrecision Precision { get; private set; }
    /// <summary>How the replicas' passes store their block activations.</summary>
    public ActivationPrecision Activations { get; private set; }

    /// <param name="profile">Whether the contexts take GPU timestamps (for their whole life).</param>
    public static BenchReplicas Open(T5Checkpoint ckpt, BenchSettings s, bool profile, Action<string>? log)
    {
        var r = new BenchReplicas();
        try
        {
            foreach (var device in s.Devices)
                r.Contexts.Add(GpuContext.Create(EnvironmentSettings.GpuOptions() with { Device = device, Profiling = profile, Log = log, Activations = s.Activations }));
            // fp16 and bf16 store the frozen matrices as halves, widened to fp32 as they are read;
            // activations and sums stay fp32 (ModelOptions.Precision). auto resolves per device,
            // and to fp32 where the devices would differ (every replica holds the same values).
            var each = r.Contexts.Select(c => WeightPrecisions.Parse(s.Precision, c.Capabilities)).Distinct().ToList();
            r.Precision = each.Count == 1 ? each[0] : WeightPrecision.Fp32;
            log?.Invoke($"weights: {r.Precision.Name()}");
            // As PromptModel resolves it: the same on every replica.
            r.Activations = s.Activations ?? ActivationPrecisions.Resolve(r.Contexts.Select(c => c.Plan.Activations));
            log?.Invoke($"activations: {r.Activations.Name()}");
            foreach (var c in r.Contexts)
            {
                var backend = new GpuBackend(c) { AttentionFusion = s.Attention, Activations = r.Activations };
                try { r.Replicas.Add(new T5Weights(ckpt, backend, r.Precision)); }
                catch { backend.Dispose(); throw; }
            }
            return r;
        }
        catch
        {
            r.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var w in Replicas)
        {
            w.Dispose();
            w.Backend.Dispose();
        }
        foreach (var c in Contexts) c.Dispose();
    }
}

/// <param name="Activations">--activations; null: auto, resolved over the devices as a run resolves it.</param>
internal sealed record BenchSettings(string Name, string? Directory, BatchShape Batch, string Precision, int Steps, int Warmup, bool Profile, bool Recompute,
                                     IReadOnlyList<string> Devices, AttentionFusion Attention, string JsonPath, string CommandLine, ActivationPrecision? Activations = null);

// The report's JSON (camelCase through CliJson): tools/peer/peer_bench.py writes the same fields,
// and tools/bench-table.py reads both. docs/benchmarks.md describes each one.

internal sealed record BenchReport(
    string Schema, string Implementation, string Command, string Timestamp,
    BenchDevice Device, DeviceCapabilities? Capabilities, JsonObject? Plan, BenchModel Model, BenchBatch Batch,
    string Precision, string ActivationPrecision, BenchAttention Attention, bool Recompute, double Dropout, int WarmupSteps, int Steps, bool Profiled,
    bool TuneMatMul, StepStats StepMs, IReadOnlyList<double> StepTimesMs,
    double ExamplesPerSecond, double TokensPerSecond, long TokensPerStep,
    long ForwardFlops, long BackwardFlops, long FlopsPerStep, double Tflops,
    long PeakMemoryBytes, long ReservedMemoryBytes, long WeightMemoryBytes, IReadOnlyList<ActivationMemory> MemoryByActivations,
    LossStats Loss, Breakdown? Breakdown, IReadOnlyList<string> Notes);

internal sealed record BenchDevice(string Name, string Driver, string Api)
{
    /// <summary>The device as every bench report names it; driverInfo is what vendors print as the
    /// version (NVIDIA "580.159.04", Mesa "Mesa 25.0.7 ...").</summary>
    public static BenchDevice Of(DeviceCapabilities caps) => new(caps.Name, $"{caps.DriverName} {(caps.DriverInfo.Length > 0 ? caps.DriverInfo : caps.DriverVersion)}", "vulkan");
}

/// <summary>The peak device memory of the step with its block activations stored as
/// <paramref name="Activations"/> (fp32, bf16, fp16), the weights included.</summary>
internal sealed record ActivationMemory(string Activations, long PeakMemoryBytes);

internal sealed record BenchModel(string Shape, long Parameters, int DModel, int DFf, int NumHeads, int DKv, int NumLayers, int NumDecoderLayers,
                                  int VocabSize, string FeedForward, bool TiedEmbeddings);

/// <summary>The --attention setting, and how each attention of the step ran under it ("fused" or
/// "unfused"): auto decides per attention from its size.</summary>
internal sealed record BenchAttention(string Setting, string EncoderSelf, string DecoderSelf, string Cross)
{
    public override string ToString()
    {
        string[] sites = [EncoderSelf, DecoderSelf, Cross];
        string ran = sites.Distinct().Count() == 1 ? EncoderSelf
            : $"encoder self-attention {EncoderSelf}, decoder self-attention {DecoderSelf}, cross-attention {Cross}";
        return Setting == ran ? ran : $"{Setting}: {ran}";
    }
}

internal sealed record BenchBatch(int BatchSize, int InputLength, int TargetLength, int PromptLength);

internal sealed record StepStats(double Median, double Min, double Max)
{
    /// <summary>The median, least and greatest of <paramref name="ms"/> (at least one).</summary>
    public static StepStats Of(IReadOnlyList<double> ms)
    {
        var sorted = ms.Order().ToList();
        int mid = sorted.Count / 2;
        return new StepStats(sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2, sorted[0], sorted[^1]);
    }
}

internal sealed record LossStats(double First, double Last);

/// <summary>GPU time per step: the sum of every dispatch's time, then by phase and by kernel.</summary>
internal sealed record Breakdown(int Steps, double GpuMs, IReadOnlyList<TimeShare> Phases, IReadOnlyList<TimeShare> Ops);

/// <summary>Dispatches and GPU time of a phase or a kernel per step; a phase also lists its kernels.</summary>
internal sealed record TimeShare(string Name, int Count, double Ms, double Share,
                                 [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<TimeShare>? Ops = null);
