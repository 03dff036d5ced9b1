using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Diagnostics;

namespace VkPrompt.Cli.Commands;

/// <summary>
/// <c>vkprompt bench matmul</c>: every distinct matrix product one training step of a T5 shape
/// makes (<see cref="T5Pass.Trace"/>, with the step's activations' storages), each timed alone
/// with GPU timestamps on random operands stored as the step stores them and
/// checked against an fp64 dot product of the operands as the kernel reads them
/// (<see cref="ProductBench"/>). A cheap way to sweep the product's tilings
/// (VKPROMPT_MATMUL_TILING, VKPROMPT_MATRIX_UNITS, VKPROMPT_MATRIX_UNITS_TILING) at real shapes on a
/// borrowed GPU, and to validate a new kernel there (docs/benchmarks.md). This command parses the
/// options, reports and writes the JSON; the library measures.
/// </summary>
internal static class BenchMatMulCommand
{
    public const string Schema = "vkprompt-bench-matmul/1";

    public static Command Create()
    {
        var shape = BenchCommand.ShapeOption(null, "whose config.json gives the shape (no weights are read)");
        var batch = ModelOptions.BatchSize(32);
        var (input, target, promptLength) = BenchCommand.LengthOptions();
        var precision = new Option<string>("--precision")
        {
            HelpName = "fp32|fp16|bf16|int8|auto",
            Description = "How the products whose B is a frozen weight store it, as in 'vkprompt bench' and 'train' (widened to fp32 as it is read; " +
                          "16-bit weights run on the matrix units where the device has them, A rounded to fp16, unless VKPROMPT_MATRIX_UNITS=0; " +
                          "int8 weights, each row with its own scale, go there in the products that read them as A·Bᵀ). " +
                          "Attention products multiply two activations, stored as --activations says. auto: bf16 where the device has 16-bit storage. Default: fp32.",
            DefaultValueFactory = _ => ModelOptions.DefaultPrecision,
        };
        precision.AcceptOnlyFromAmong([.. WeightPrecisions.Names]);
        var reps = new Option<int>("--reps")
        {
            Description = "Timed dispatches of each product, back to back in one submission, each between its own GPU timestamps; the report gives their median. Default: 10.",
            DefaultValueFactory = _ => 10,
        };
        var warmupMs = new Option<int>("--warmup-ms")
        {
            Description = "Before timing a product, run its dispatches untimed for at least this long (once at least), so that the GPU's clocks are up as they are " +
                          "inside a training step. Default: 100.",
            DefaultValueFactory = _ => 100,
        };
        var json = new Option<string?>("--json") { HelpName = "FILE", Description = "Where to write the JSON report. Default: vkprompt-bench-matmul-SHAPE-PRECISION-act-ACTIVATIONS.json in the current directory." };
        var device = Cli.DeviceOption();
        var attention = ModelOptions.Attention();
        var activations = ModelOptions.Activations();
        activations.Description = "How the step keeps its block activations, as 'train --activations' and 'vkprompt bench' store them: each product reads its A " +
                                  "and an activation B (attention's q, k, v, the feed-forward's hidden output) and writes its C as the step does, 16-bit " +
                                  "where the step keeps that tensor in 16 bits (the residual stream, the logits and every gradient stay fp32). " +
                                  "auto: the device plan's choice, bf16 on GPUs with 16-bit storage, fp32 on CPU Vulkan devices such as lavapipe " +
                                  "('vkprompt devices --json'). Default: auto, what 'train' would use.";
        var cmd = new Command("matmul",
            "Time each distinct matrix product of one training step of a T5 shape alone, as the model issues it (layout, transposes, which operand is the weight " +
            "and in which precision): q/k/v/o, the feed-forward, the LM head, their backward dX = dY·W, and the attention products of the attentions that run unfused " +
            "(--attention), each operand stored as the step stores it: with 16-bit activations (--activations, bf16 by default on GPUs) a product reads a 16-bit A " +
            "(and B, where B is an activation) and writes a 16-bit C wherever the step does. Each runs untimed for --warmup-ms, then --reps times back to back with GPU timestamps, " +
            "on random operands in [-1, 1] rounded to their storage, then is checked against an fp64 dot product of the operands as stored " +
            $"at {ProductBench.Samples} sampled outputs (error over the largest |C|: at most {ProductBench.Fp32Tolerance:G} with fp32 sums, {ProductBench.Fp16Tolerance:G} on the matrix units' fp16 fragments, {ProductBench.Bf16FragmentsTolerance:G} on their bf16 ones, " +
            $"plus the rounding of a 16-bit C, {ActivationPrecision.Bf16.UnitRoundoff():G3} bf16 and {ActivationPrecision.Fp16.UnitRoundoff():G3} fp16; " +
            "exit code 1 naming the product above that). Reports per product the storage of A, B and C, the kernel and tiling that ran, the median time, TFLOP/s and how often a step makes it, " +
            "and per step their sum; printed and written as JSON. Sweep tile shapes with VKPROMPT_MATMUL_TILING, VKPROMPT_MATRIX_UNITS (0, khr, nv) and VKPROMPT_MATRIX_UNITS_TILING; " +
            "with VKPROMPT_MATMUL_TUNE=1 on a GPU each product is first tuned among its kernel's tilings, and its row has every candidate's times (docs/benchmarks.md). " +
            "VKPROMPT_MATRIX_UNITS=emulate runs the matrix-unit kernel with its matrix operations emulated, on any device with fp16 arithmetic: its results, not its speed. " +
            "A matrix-unit product that reads a 16-bit copy of A (VKPROMPT_MATRIX_UNITS_HALF_A, on by default) shows the copy's time beside its own, and the step's sum counts it. " +
            "VKPROMPT_PIPELINE_STATS=1 adds what the driver compiled each kernel into (registers per invocation and the like), where it reports it. " +
            $"A product with an epilogue (the o and wo projections adding to the stream, wi's relu, wi_1's gate) runs it, and where the step drops (its dropout above 0) " +
            $"with a mask of rate {MatMulKernel.BenchDropout:G} (its matrix-unit products then store every tile through shared memory, as the step's do).")
        {
            shape, batch, input, target, promptLength, precision, reps, warmupMs, json, device, attention, activations,
        };
        cmd.SetAction(parse =>
        {
            int b = ModelOptions.Positive(parse, batch), l = BenchCommand.LengthArg(parse, input), t = BenchCommand.LengthArg(parse, target);
            int p = ModelOptions.Positive(parse, promptLength), n = ModelOptions.Positive(parse, reps);
            int w = parse.GetValue(warmupMs);
            if (w < 0) throw new UsageException($"--warmup-ms must not be negative, got {w}");
            string dev = parse.GetValue(device)!;
            if (dev.Equals("cpu", StringComparison.OrdinalIgnoreCase))
                throw new UsageException("bench matmul measures a Vulkan device; --device cpu (the C# reference backend) is not benchmarked");
            var (name, directory) = BenchCommand.ReadShape(parse, shape);
            string jsonPath = parse.GetValue(json) is { } j ? ModelOptions.OutputFile(json.Name, j, OutputKind.Report, (shape.Name, directory)) : "";
            var config = BenchCommand.ConfigOf(name, directory);
            var batchShape = new BatchShape(b, l, t, p);
            BenchCommand.RefuseTooLarge(batchShape, config);
            var settings = new Settings(config, name, batchShape, parse.GetValue(precision)!, n, w, dev, ModelOptions.ReadAttention(parse, attention), jsonPath,
                "vkprompt " + string.Join(' ', parse.Tokens.Select(token => token.Value)), ModelOptions.ReadActivations(parse, activations));
            return Run(settings, Cli.Console(parse), parse.InvocationConfiguration.Error, ModelOptions.Log(parse));
        });
        return cmd;
    }

    /// <param name="Activations">--activations; null: auto, the device plan's choice.</param>
    sealed record Settings(T5Config Config, string Name, BatchShape Batch, string Precision, int Reps, int WarmupMs, string Device, AttentionFusion Attention, string JsonPath,
                           string CommandLine, ActivationPrecision? Activations);

    static int Run(Settings s, IAnsiConsole console, TextWriter stderr, Action<string>? log)
    {
        var report = Measure(s, console, log);
        // The default name holds what the device plan chose, known only now: checked as late as that.
        string path = s.JsonPath.Length > 0 ? s.JsonPath
                    : ModelOptions.OutputFile("--json", $"vkprompt-bench-matmul-{s.Name}-{report.Precision}-act-{report.Activations}.json", OutputKind.Report);
        Print(console, report);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(report, CliJson.Default.BenchMatMulReport) + "\n");
        console.WriteLine($"wrote {path}");
        var failed = report.Products.Where(r => r.Skipped is null && !r.Ok).ToList();
        if (failed.Count == 0) return Cli.Ok;
        foreach (var r in failed)
            stderr.WriteLine($"error: product '{r.Name}' ({r.M}x{r.N}x{r.K}, batch {r.Batch}, {r.Kernel} {r.Tiling}) is wrong: " +
                             (r.MaxRelativeError is { } e ? $"max error {F(e, "E2")} of the largest |C|, above the tolerance {F(r.Tolerance, "G")}" : "non-finite output"));
        return Cli.InternalError;
    }

    static BenchMatMulReport Measure(Settings s, IAnsiConsole console, Action<string>? log)
    {
        var c = s.Config;
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Device = s.Device, Log = log, Activations = s.Activations });
        var caps = ctx.Capabilities;
        var precision = WeightPrecisions.Parse(s.Precision, caps);
        precision.Require(caps);
        // As a model opened on this one device would store them (PromptModel.Open): the plan's,
        // which are --activations where given.
        var activations = ctx.Plan.Activations;
        activations.Require(caps);
        var notes = new List<string>();

        // The backend answers only which attentions fuse, as the step's would.
        using var backend = new GpuBackend(ctx) { AttentionFusion = s.Attention };
        var shape = s.Batch;
        int le = shape.EncoderLength, ld = shape.TargetLength;
        bool encFused = backend.FusesAttention(new(shape.Batch, c.NumHeads, le, le)), decFused = backend.FusesAttention(new(shape.Batch, c.NumHeads, ld, ld, Causal: true)),
             crossFused = backend.FusesAttention(new(shape.Batch, c.NumHeads, ld, le));
        var attention = new BenchAttention(s.Attention.Name(), Fused(encFused), Fused(decFused), Fused(crossFused));
        if (encFused || decFused || crossFused)
            notes.Add($"attention {attention}: a fused attention makes no matrix products, so its products are not in the step (--attention unfused times them)");
        var products = StepProductChecks.Of(c, shape, precision, activations, backend.FusesAttention);

        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{s.Name}: batch {shape.Batch}, input {shape.InputLength} + prompt {shape.PromptLength}, target {shape.TargetLength}: {products.Count} distinct products, " +
            $"{products.Sum(p => p.Count)} per step; weights {precision.Name()}, activations {activations.Name()}; {s.Reps} timed dispatch(es) each on {caps.Name}"));

        var bench = ProductBench.Run(ctx, products.Select(p => new BenchProduct(p.Name, p.Spec, p.Weight ?? WeightPrecision.Fp32)).ToList(), s.Reps, s.WarmupMs);
        foreach (var (p, m) in products.Zip(bench.Products).Where(pm => pm.Second.Skipped is not null))
            notes.Add($"skipped '{p.Name}': {m.Skipped}");
        // Weights are stored as a model's would be on this context (bf16 as fp16 for the matrix
        // units); the reference computes with the values as asked, which are the same.
        var stored = ctx.Plan.StoredPrecision(precision);
        if (stored != precision) notes.Add($"{precision.Name()} weights are stored as {stored.Name()}, as a model's are where the matrix units read them (VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS)");
        if (bench.Tuned is { } tuned)
            notes.Add($"VKPROMPT_MATMUL_TUNE=1: {tuned} product shape(s) tuned before timing; a row's 'tuning' has every candidate tiling's times, its tiling is the fastest");
        else if (ctx.Options.TuneMatMul)
            notes.Add("VKPROMPT_MATMUL_TUNE=1 does nothing on a CPU device: it runs the streamed product, whose one tiling leaves nothing to choose");
        if (!bench.Profiled) notes.Add("the device records no timestamps on its compute queue: each time is the wall-clock time of a product's reps over their number, submit and wait included");
        var rows = products.Zip(bench.Products, Row).ToList();
        if (ctx.Options.Validation) notes.Add("the Vulkan validation layer was on (VKPROMPT_VALIDATION=1): these times are not representative");
        if (ctx.Options.PipelineStatistics && !ctx.PipelineStatistics)
            notes.Add($"VKPROMPT_PIPELINE_STATS=1: {caps.Name} does not report pipeline statistics (VK_KHR_pipeline_executable_properties)");

        var measured = rows.Where(r => r.Ms is not null).ToList();
        double stepMs = measured.Sum(r => r.Count * (r.Ms!.Median + (r.HalfCopyMs ?? 0)));
        if (measured.Any(r => r.HalfCopyMs is not null))
            notes.Add("products that read a 16-bit copy of A (VKPROMPT_MATRIX_UNITS_HALF_A) count its conversion (halfCopyMs) in the step's sum once per use: " +
                      "a step converts an activation once for all the products that read it, so the sum errs high by the shared ones");
        long measuredFlops = measured.Sum(r => r.Count * r.Flops);
        var totals = new MatMulStepTotals(rows.Sum(r => r.Count), measured.Sum(r => r.Count), rows.Sum(r => r.Count * r.Flops), measuredFlops, stepMs,
                                          stepMs > 0 ? measuredFlops / (stepMs / 1e3) / 1e12 : 0);
        return new BenchMatMulReport(
            Schema,
            Cli.Version,
            s.CommandLine,
            DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            BenchDevice.Of(caps),
            caps,
            new BenchModel(s.Name, T5Names.All(c).Sum(t => t.Shape.Aggregate(1L, (x, y) => x * y)), c.DModel, c.DFf, c.NumHeads, c.DKv, c.NumLayers, c.NumDecoderLayers,
                           c.VocabSize, c.FeedForwardProjName, c.TieWordEmbeddings),
            new BenchBatch(shape.Batch, shape.InputLength, shape.TargetLength, shape.PromptLength),
            precision.Name(), activations.Name(), attention, c.DropoutRate, s.Reps, s.WarmupMs, bench.Profiled,
            new MatMulSwitches(ctx.UsesMatrixUnits, ctx.MatrixUnitsEmulated, ctx.MatrixUnits.ToString().ToLowerInvariant(), ctx.Options.MatMulTiling, ctx.Options.MatrixUnitsTiling,
                               bench.Tuned is not null, ctx.Options.MatrixUnitsHalfActivations),
            rows, totals, notes)
        {
            Pipelines = ctx.PipelineStatistics ? ctx.Kernels.Select(k => new PipelineReport(k.Name, k.Specialization, k.Statistics)).ToList() : null,
        };
    }

    static string Fused(bool fused) => fused ? "fused" : "unfused";

    static MatMulRow Row(StepProduct p, ProductMeasurement m)
    {
        var s = p.Spec;
        TimeStats? stats = null;
        double? tflops = null;
        if (m.TimesMs is { Count: > 0 } times)
        {
            double median = DispatchTimer.Median(times);
            stats = new TimeStats(median, times.Min(), times.Max());
            tflops = median > 0 ? p.Flops / (median / 1e3) / 1e12 : null;
        }
        return new MatMulRow(p.Name, p.Uses, p.Count, s.M, s.N, s.K, s.Batch1 * s.Batch2, p.WeightB ? "weight" : "activation", m.B.Name(),
                             new OperandStorages(s.AStorage.Name(), p.WeightB ? m.B.Name() : s.BStorage.Name(), s.CStorage.Name()), s.Accumulate, s.Alpha, s,
                             p.Flops, m.Kernel, m.Tiling, m.Tuning, stats, m.TimesMs, tflops, m.MaxRelativeError, m.Tolerance, m.CheckedOutputs, m.Ok, m.Skipped)
        { HalfCopyMs = m.HalfCopyMs };
    }

    static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    static void Print(IAnsiConsole console, BenchMatMulReport r)
    {
        console.WriteLine($"device: {r.Device.Name} ({r.Device.Driver})");
        var sw = r.Switches;
        string Tiling(string? forced) => forced ?? (sw.TuneMatMul ? "tuned per product" : "default");
        console.WriteLine($"weights: {r.Precision}; activations: {r.Activations}; matrix units: {(sw.CooperativeMatrixEmulated ? "emulated (VKPROMPT_MATRIX_UNITS=emulate)" : sw.CooperativeMatrix ? $"on ({sw.MatrixUnits})" : r.Capabilities.CooperativeMatrixKhr || r.Capabilities.CooperativeMatrixNv ? "off (VKPROMPT_MATRIX_UNITS=0)" : "none")}; " +
                          $"tiling: portable {Tiling(sw.MatMulTiling)}{(sw.CooperativeMatrix ? $", matrix units {Tiling(sw.CoopMatTiling)}" : "")}; attention: {r.Attention}");
        var table = new Table().AddColumns("product", "per step", "M x N x K", "batch", "B", "A, B -> C", "kernel", "median ms", "TFLOP/s", "error", "");
        foreach (var p in r.Products)
            table.AddRow(Markup.Escape(p.Name), p.Count.ToString(CultureInfo.InvariantCulture), $"{p.M} x {p.N} x {p.K}{(p.Accumulate ? " +=" : "")}{p.Spec.Epilogue switch { MatMulEpilogue.Residual => " + stream", MatMulEpilogue.Gate => " gated", MatMulEpilogue.Relu => " relu", _ => "" }}{(p.Spec.EpilogueDropout ? " dropped" : "")}",
                         p.Batch.ToString(CultureInfo.InvariantCulture), p.BOperand, $"{p.Storage.A}, {p.Storage.B} -> {p.Storage.C}", Markup.Escape($"{p.Kernel} {p.Tiling}{(p.Tuning is null ? "" : " (tuned)")}"),
                         p.Ms is { } ms ? F(ms.Median, "F3") + (p.HalfCopyMs is { } copy ? $" + {F(copy, "F3")} copy" : "") : "-", p.Tflops is { } t ? F(t, "F3") : "-",
                         p.MaxRelativeError is { } e ? F(e, "E1") : p.Skipped is null ? "non-finite" : "-",
                         p.Skipped is not null ? "[yellow]skipped[/]" : p.Ok ? "ok" : "[red]WRONG[/]");
        console.Write(table);
        var st = r.Step;
        console.WriteLine($"per step: {st.MeasuredProductsPerStep} of {st.ProductsPerStep} products measured, {F(st.MsPerStep, "F3")} ms (sum of count x median), " +
                          $"{F(st.MeasuredFlopsPerStep / 1e12, "F4")} TFLOP, {F(st.Tflops, "F3")} TFLOP/s");
        foreach (var pipeline in r.Pipelines ?? [])
            console.WriteLine($"pipeline {pipeline.Shader} [{string.Join(',', pipeline.Specialization)}]: " +
                              string.Join(", ", pipeline.Statistics.Select(st => $"{st.Name} {F(st.Value, "G")}")));
        foreach (var note in r.Notes) console.MarkupLineInterpolated($"[yellow]note[/]: {note}");
    }
}

// The report's JSON (camelCase through CliJson); docs/benchmarks.md describes it.

internal sealed record BenchMatMulReport(
    string Schema, string Implementation, string Command, string Timestamp,
    BenchDevice Device, DeviceCapabilities Capabilities, BenchModel Model, BenchBatch Batch,
    string Precision, string Activations, BenchAttention Attention, double Dropout, int Reps, int WarmupMs, bool Profiled, MatMulSwitches Switches,
    IReadOnlyList<MatMulRow> Products, MatMulStepTotals Step, IReadOnlyList<string> Notes)
{
    /// <summary>Every pipeline the products ran, with the driver's statistics of it, where
    /// VKPROMPT_PIPELINE_STATS=1 collected them; else null.</summary>
    public IReadOnlyList<PipelineReport>? Pipelines { get; init; }
}

/// <summary>A kernel's shader, specialization constants (constant_id order) and what the driver
/// reported compiling it into.</summary>
internal sealed record PipelineReport(string Shader, IReadOnlyList<int> Specialization, IReadOnlyList<PipelineStatistic> Statistics);

/// <summary>What chose the kernels: the matrix units on or off and which build of their kernel ran
/// (none, khr, nv, emulated), the tiling variables as set (null: the default), and whether the
/// products were tuned first (VKPROMPT_MATMUL_TUNE=1 on a GPU). The member names are JSON keys
/// that tools/bench-table.py and the reports in docs/results read, so they keep the spelling
/// those were recorded with ("cooperativeMatrix", "coopMatTiling") where the code says matrix units.</summary>
internal sealed record MatMulSwitches(bool CooperativeMatrix, bool CooperativeMatrixEmulated, string MatrixUnits, string? MatMulTiling, string? CoopMatTiling, bool TuneMatMul,
                                      bool HalfActivations);

/// <summary>One distinct product: its uses per step, sizes, operands and full spec, what ran (with
/// the tuner's times of each candidate tiling where it chose the tiling), its times and check. A
/// skipped product has only <see cref="Skipped"/> and its shape.</summary>
internal sealed record MatMulRow(
    string Name, IReadOnlyList<StepProductUse> Uses, int Count, int M, int N, int K, int Batch, string BOperand, string BPrecision, OperandStorages Storage, bool Accumulate, float Alpha,
    MatMulSpec Spec, long Flops, string? Kernel, string? Tiling, IReadOnlyList<MatMulTimedTiling>? Tuning, TimeStats? Ms, IReadOnlyList<double>? TimesMs, double? Tflops,
    double? MaxRelativeError, double Tolerance, int CheckedOutputs, bool Ok, string? Skipped)
{
    /// <summary>Milliseconds of the conversion of A to the 16-bit copy the product read, if it read one.</summary>
    public double? HalfCopyMs { get; init; }
}

internal sealed record TimeStats(double Median, double Min, double Max);

/// <summary>How a product's operands are stored, as the step stores them: A and C as fp32, bf16 or
/// fp16 (<see cref="MatMulSpec.AStorage"/>, <see cref="MatMulSpec.CStorage"/>); B as an
/// activation's storage, or a weight's stored precision (its row's bPrecision).</summary>
internal sealed record OperandStorages(string A, string B, string C);

/// <summary>The step's products: how many it makes (all, and those measured), their FLOPs, and
/// Σ count·median with the TFLOP/s it comes to.</summary>
internal sealed record MatMulStepTotals(int ProductsPerStep, int MeasuredProductsPerStep, long FlopsPerStep, long MeasuredFlopsPerStep, double MsPerStep, double Tflops);
