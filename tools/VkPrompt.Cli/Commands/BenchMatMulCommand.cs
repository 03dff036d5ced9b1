using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

/// <summary>
/// <c>vkprompt bench matmul</c>: every distinct matrix product one training step of a T5 shape
/// makes (<see cref="StepProducts"/>), each timed alone with GPU timestamps on random operands and
/// checked against an fp64 dot product of the operands as the kernel reads them. A cheap way to
/// sweep the product's tilings (VKPROMPT_MATMUL_TILING, VKPROMPT_COOPMAT, VKPROMPT_COOPMAT_TILING)
/// at real shapes on a borrowed GPU, and to validate a new kernel there (docs/benchmarks.md).
/// </summary>
internal static class BenchMatMulCommand
{
    public const string Schema = "vkprompt-bench-matmul/1";

    /// <summary>Largest error relative to the largest |C| of the checked outputs: the reference sums
    /// in fp64 the very values the kernel reads, so only the kernel's fp32 sums differ from it.</summary>
    public const double Fp32Tolerance = 1e-4;

    /// <summary>The same where the matrix units ran, their A rounded to fp16 (the reference rounds it likewise).</summary>
    public const double Fp16Tolerance = 2e-3;

    /// <summary>Outputs compared per product (all of them where there are fewer), besides the corners.</summary>
    const int Samples = 256;

    public static Command Create()
    {
        var shape = new Option<string>("--shape")
        {
            HelpName = "NAME|DIR",
            Description = "t5-small (original T5), t5-base, t5-large or t5-xl (T5 v1.1 LM-adapted shapes), or a Hugging Face T5 directory whose config.json gives the shape " +
                          "(no weights are read).",
            Required = true,
        };
        var batch = ModelOptions.BatchSize(32);
        var (input, target, promptLength) = BenchCommand.LengthOptions();
        var precision = new Option<string>("--precision")
        {
            HelpName = "fp32|fp16|bf16|auto",
            Description = "How the products whose B is a frozen weight store it, as in 'vkprompt bench' and 'train' (widened to fp32 as it is read; " +
                          "such products run on the matrix units where the device has them, A rounded to fp16, unless VKPROMPT_COOPMAT=0). " +
                          "Attention products always take fp32 operands. auto: bf16 where the device has 16-bit storage. Default: fp32.",
            DefaultValueFactory = _ => ModelOptions.DefaultPrecision,
        };
        precision.AcceptOnlyFromAmong(WeightPrecisions.Names);
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
        var json = new Option<string?>("--json") { HelpName = "FILE", Description = "Where to write the JSON report. Default: vkprompt-bench-matmul-SHAPE-PRECISION.json in the current directory." };
        var device = Cli.DeviceOption();
        var attention = ModelOptions.Attention();
        var cmd = new Command("matmul",
            "Time each distinct matrix product of one training step of a T5 shape alone, as the model issues it (layout, transposes, which operand is the weight " +
            "and in which precision): q/k/v/o, the feed-forward, the LM head, their backward dX = dY·W, and the attention products of the attentions that run unfused " +
            "(--attention). Each runs untimed for --warmup-ms, then --reps times back to back with GPU timestamps, on random operands in [-1, 1], then is checked against an fp64 dot product " +
            $"of 256 sampled outputs (error over the largest |C|: at most {Fp32Tolerance:G} with fp32 sums of fp32-read operands, {Fp16Tolerance:G} on the matrix units; " +
            "exit code 1 naming the product above that). Reports per product the kernel and tiling that ran, the median time, TFLOP/s and how often a step makes it, " +
            "and per step their sum; printed and written as JSON. Sweep tile shapes with VKPROMPT_MATMUL_TILING, VKPROMPT_COOPMAT (0, khr, nv) and VKPROMPT_COOPMAT_TILING; " +
            "with VKPROMPT_MATMUL_TUNE=1 on a GPU each product is first tuned among its kernel's tilings, and its row has every candidate's times (docs/benchmarks.md). " +
            "VKPROMPT_COOPMAT=emulate runs the matrix-unit kernel with its matrix operations emulated, on any device with fp16 arithmetic: its results, not its speed. " +
            "A matrix-unit product that reads a 16-bit copy of A (VKPROMPT_COOPMAT_HALF_A, on by default) shows the copy's time beside its own, and the step's sum counts it. " +
            "VKPROMPT_PIPELINE_STATS=1 adds what the driver compiled each kernel into (registers per invocation and the like), where it reports it.")
        {
            shape, batch, input, target, promptLength, precision, reps, warmupMs, json, device, attention,
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
            string jsonPath = parse.GetValue(json) is { } j ? ModelOptions.OutputFile(json.Name, j) : "";
            string shapeArg = parse.GetValue(shape)!;
            T5Config config;
            string name;
            if (BenchCommand.NamedShapes.Contains(shapeArg))
                (config, name) = (T5Config.Named(shapeArg), shapeArg);
            else if (Directory.Exists(shapeArg))
                (config, name) = (T5Config.Load(Path.Combine(shapeArg, "config.json")), Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(shapeArg))));
            else throw new UsageException($"--shape '{shapeArg}' is neither {string.Join(", ", BenchCommand.NamedShapes)} nor a model directory");
            var settings = new Settings(config, name, new BatchShape(b, l, t, p), parse.GetValue(precision)!, n, w, dev, ModelOptions.ReadAttention(parse, attention), jsonPath,
                "vkprompt " + string.Join(' ', parse.Tokens.Select(token => token.Value)));
            return Run(settings, Cli.Console(parse), parse.InvocationConfiguration.Error, ModelOptions.Log(parse));
        });
        return cmd;
    }

    sealed record Settings(T5Config Config, string Name, BatchShape Batch, string Precision, int Reps, int WarmupMs, string Device, AttentionFusion Attention, string JsonPath, string CommandLine);

    static int Run(Settings s, IAnsiConsole console, TextWriter stderr, Action<string>? log)
    {
        var report = Measure(s, console, log);
        string path = s.JsonPath.Length > 0 ? s.JsonPath : $"vkprompt-bench-matmul-{s.Name}-{report.Precision}.json";
        Print(console, report);
        File.WriteAllText(path, JsonSerializer.Serialize(report, CliJson.Default.BenchMatMulReport) + "\n");
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
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Device = s.Device, Log = log });
        var caps = ctx.Capabilities;
        var precision = WeightPrecisions.Parse(s.Precision, caps);
        precision.Require(caps);
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
        var products = StepProducts.For(c, shape, (float)c.DropoutRate, backend.FusesAttention);

        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{s.Name}: batch {shape.Batch}, input {shape.InputLength} + prompt {shape.PromptLength}, target {shape.TargetLength}: {products.Count} distinct products, " +
            $"{products.Sum(p => p.Count)} per step; weights {precision.Name()}; {s.Reps} timed dispatch(es) each on {caps.Name}"));

        // One buffer per operand, sized for the largest product that fits a binding and reused by all.
        long limit = Math.Min(ctx.MaxBindingBytes, caps.MaxMemoryAllocationSize);
        var plans = products.Select(p => Plan.Of(p, precision)).ToList();
        foreach (var plan in plans.Where(pl => pl.Largest > limit))
        {
            plan.Skipped = $"needs a {plan.Largest >> 20} MiB binding, beyond the device's maxStorageBufferRange ({limit >> 20} MiB)";
            notes.Add($"skipped '{plan.Product.Name}': {plan.Skipped}");
        }
        var runnable = plans.Where(pl => pl.Skipped is null).ToList();
        // Weights are stored as a model's would be on this context (bf16 as fp16 for the matrix
        // units); the reference computes with the values as asked, which are the same.
        var stored = ctx.Plan.StoredPrecision(precision);
        if (stored != precision) notes.Add($"{precision.Name()} weights are stored as {stored.Name()}, as a model's are where the matrix units read them (VKPROMPT_COOPMAT_FP16_WEIGHTS)");
        WeightPrecision BPrecision(StepProduct p) => p.WeightB ? stored : WeightPrecision.Fp32;
        // First, so that its scratch operands are gone before the ones below are allocated.
        bool tune = MatMulTuner.Enabled(ctx);
        if (tune)
        {
            var tuned = MatMulTuner.Tune(ctx, runnable.Select(pl => (pl.Product.Spec, BPrecision(pl.Product))));
            notes.Add($"VKPROMPT_MATMUL_TUNE=1: {tuned.Count} product shape(s) tuned before timing; a row's 'tuning' has every candidate tiling's times, its tiling is the fastest");
        }
        else if (ctx.Options.TuneMatMul)
            notes.Add("VKPROMPT_MATMUL_TUNE=1 does nothing on a CPU device: it runs the streamed product, whose one tiling leaves nothing to choose");
        bool sharedB = precision == WeightPrecision.Fp32;
        long aElems = runnable.Select(pl => pl.AElems).DefaultIfEmpty(1).Max();
        long cElems = runnable.Select(pl => pl.CElems).DefaultIfEmpty(1).Max();
        long wElems = runnable.Where(pl => sharedB || pl.Product.WeightB).Select(pl => pl.BElems).DefaultIfEmpty(1).Max();
        long fElems = sharedB ? 0 : runnable.Where(pl => !pl.Product.WeightB).Select(pl => pl.BElems).DefaultIfEmpty(1).Max();
        using var a = new GpuBuffer(ctx, 4 * aElems, "bench_a");
        using var bw = new GpuBuffer(ctx, precision.ElementBytes() * wElems, "bench_b_weight");
        using var bf = sharedB ? null : new GpuBuffer(ctx, 4 * fElems, "bench_b_activation");
        using var cBuf = new GpuBuffer(ctx, 4 * cElems, "bench_c");
        MatMulOperands.Fill(a, aElems, MatMulOperands.SeedA, WeightPrecision.Fp32);
        MatMulOperands.Fill(bw, wElems, MatMulOperands.SeedB, stored, precision);
        if (bf is not null) MatMulOperands.Fill(bf, fElems, MatMulOperands.SeedB, WeightPrecision.Fp32);

        var rows = new List<MatMulRow>();
        bool profiled = caps.TimestampsSupported;
        if (!profiled) notes.Add("the device records no timestamps on its compute queue: each time is the wall-clock time of a product's reps over their number, submit and wait included");
        foreach (var plan in plans)
        {
            var p = plan.Product;
            var bPrecision = BPrecision(p);
            var (kernel, tiling) = MatMulKernel.Selection(ctx, p.Spec, bPrecision);
            if (plan.Skipped is not null)
            {
                rows.Add(Row(p, bPrecision, null, null, null, null, null, Tolerance(kernel), 0, false, plan.Skipped));
                continue;
            }
            var b = p.WeightB || bf is null ? bw : bf;
            log?.Invoke($"{p.Name}: {p.Spec.M}x{p.Spec.N}x{p.Spec.K} x{p.Spec.Batch1 * p.Spec.Batch2}, {kernel} {tiling}");
            var (times, copyMs) = Time(ctx, a, b, cBuf, p.Spec, bPrecision, s.Reps, s.WarmupMs, kernel, p.Name);
            var (error, checkedOutputs) = Check(ctx, a, b, cBuf, p.Spec, bPrecision, MatMulKernel.IsCooperativeMatrix(kernel), p.WeightB ? precision : WeightPrecision.Fp32);
            double tolerance = Tolerance(kernel);
            bool ok = error is { } e && e <= tolerance;
            rows.Add(Row(p, bPrecision, kernel, tiling, MatMulTuner.Find(ctx, p.Spec, bPrecision)?.Candidates, times, error, tolerance, checkedOutputs, ok, null) with { HalfCopyMs = copyMs });
        }
        if (ctx.Validation.Errors.FirstOrDefault() is { } validationError)
            throw new InvalidOperationException($"{ctx.Validation.ErrorCount} Vulkan validation error(s); the first: {validationError}");
        if (ctx.Options.Validation) notes.Add("the Vulkan validation layer was on (VKPROMPT_VALIDATION=1): these times are not representative");
        if (ctx.Options.PipelineStatistics && !ctx.PipelineStatistics)
            notes.Add($"VKPROMPT_PIPELINE_STATS=1: {caps.Name} does not report pipeline statistics (VK_KHR_pipeline_executable_properties)");

        var measured = rows.Where(r => r.Ms is not null).ToList();
        double stepMs = measured.Sum(r => r.Count * (r.Ms!.Median + (r.HalfCopyMs ?? 0)));
        if (measured.Any(r => r.HalfCopyMs is not null))
            notes.Add("products that read a 16-bit copy of A (VKPROMPT_COOPMAT_HALF_A) count its conversion (halfCopyMs) in the step's sum once per use: " +
                      "a step converts an activation once for all the products that read it, so the sum errs high by the shared ones");
        long measuredFlops = measured.Sum(r => r.Count * r.Flops);
        var totals = new MatMulStepTotals(rows.Sum(r => r.Count), measured.Sum(r => r.Count), rows.Sum(r => r.Count * r.Flops), measuredFlops, stepMs,
                                          stepMs > 0 ? measuredFlops / (stepMs / 1e3) / 1e12 : 0);
        return new BenchMatMulReport(
            Schema,
            $"vkprompt {typeof(BenchMatMulCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion}",
            s.CommandLine,
            DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            new BenchDevice(caps.Name, $"{caps.DriverName} {(caps.DriverInfo.Length > 0 ? caps.DriverInfo : caps.DriverVersion)}", "vulkan"),
            caps,
            new BenchModel(s.Name, T5Names.All(c).Sum(t => t.Shape.Aggregate(1L, (x, y) => x * y)), c.DModel, c.DFf, c.NumHeads, c.DKv, c.NumLayers, c.NumDecoderLayers,
                           c.VocabSize, c.IsGatedAct ? "gated-gelu" : "relu", c.TieWordEmbeddings),
            new BenchBatch(shape.Batch, shape.InputLength, shape.TargetLength, shape.PromptLength),
            precision.Name(), attention, c.DropoutRate, s.Reps, s.WarmupMs, profiled,
            new MatMulSwitches(ctx.CooperativeMatrix, ctx.CooperativeMatrixEmulated, ctx.MatrixUnits.ToString().ToLowerInvariant(), ctx.Options.MatMulTiling, ctx.Options.MatrixUnitsTiling, tune,
                               ctx.Options.MatrixUnitsHalfActivations),
            rows, totals, notes)
        {
            Pipelines = ctx.PipelineStatistics ? ctx.Kernels.Select(k => new PipelineReport(k.Name, k.Specialization, k.Statistics)).ToList() : null,
        };
    }

    /// <summary>The product's dispatches timed as <see cref="DispatchTimer.Repeat"/> times them, and,
    /// where it reads a 16-bit copy of A, the conversion's time (the first rep makes the copy, the
    /// others read it).</summary>
    static (IReadOnlyList<double> Times, double? CopyMs) Time(GpuContext ctx, GpuBuffer a, GpuBuffer b, GpuBuffer c, MatMulSpec spec, WeightPrecision bPrecision, int reps,
                                                              int warmupMs, string kernel, string name)
    {
        var (times, labels) = DispatchTimer.Repeat(ctx, g => MatMulKernel.Run(g, a, b, c, spec, bPrecision), reps, warmupMs);
        if (labels is null) return (times, null);
        // The label is the shader that was dispatched: it must be the one reported.
        if (labels.FirstOrDefault(label => label != kernel && label != ToHalfKernel.Shader) is { } ran)
            throw new InvalidOperationException($"MatMulKernel.Selection says {kernel} but {ran} ran for '{name}'");
        var copies = times.Where((_, i) => labels[i] == ToHalfKernel.Shader).ToList();
        return (times.Where((_, i) => labels[i] != ToHalfKernel.Shader).ToList(), copies.Count > 0 ? copies.Sum() : null);
    }

    static double Tolerance(string kernel) => MatMulKernel.IsCooperativeMatrix(kernel) ? Fp16Tolerance : Fp32Tolerance;

    static string Fused(bool fused) => fused ? "fused" : "unfused";

    static MatMulRow Row(StepProduct p, WeightPrecision bPrecision, string? kernel, string? tiling, IReadOnlyList<MatMulTimedTiling>? tuning, IReadOnlyList<double>? times,
                         double? error, double tolerance, int checkedOutputs, bool ok, string? skipped)
    {
        var s = p.Spec;
        TimeStats? stats = null;
        double? tflops = null;
        if (times is { Count: > 0 })
        {
            double median = DispatchTimer.Median(times);
            stats = new TimeStats(median, times.Min(), times.Max());
            tflops = median > 0 ? p.Flops / (median / 1e3) / 1e12 : null;
        }
        return new MatMulRow(p.Name, p.Uses, p.Count, s.M, s.N, s.K, s.Batch1 * s.Batch2, p.WeightB ? "weight" : "activation", bPrecision.Name(), s.Accumulate, s.Alpha, s,
                             p.Flops, kernel, tiling, tuning, stats, times, tflops, error, tolerance, checkedOutputs, ok, skipped);
    }

    /// <summary>Elements each operand of a product spans, and its largest binding in bytes.</summary>
    sealed class Plan
    {
        public required StepProduct Product { get; init; }
        public long AElems, BElems, CElems, Largest;
        public string? Skipped;

        public static Plan Of(StepProduct p, WeightPrecision precision)
        {
            var (a, b, c) = p.Spec.Extents();
            return new Plan { Product = p, AElems = a, BElems = b, CElems = c, Largest = Math.Max(4 * Math.Max(a, c), (p.WeightB ? precision.ElementBytes() : 4) * b) };
        }
    }

    /// <summary>Runs the product once more into a C filled with NaN (or with 1 where it
    /// accumulates), downloads sampled outputs and compares them with fp64 dot products of the
    /// operands as the kernel reads them: B as stored, A rounded to fp16 (saturating) where the
    /// matrix units ran. Returns the largest error over the largest |reference|, null when an
    /// output is not finite, and how many outputs were compared.</summary>
    static float ToHalf(float v) => (float)(Half)Math.Clamp(v, -HalfFloat.Fp16Max, HalfFloat.Fp16Max);

    /// <param name="bValues">the precision B's values were rounded to, where it differs from the
    /// one they are stored in (bf16 stored as fp16).</param>
    internal static (double? Error, int Checked) Check(GpuContext ctx, GpuBuffer a, GpuBuffer b, GpuBuffer c, MatMulSpec s, WeightPrecision bPrecision, bool matrixUnits,
                                                       WeightPrecision? bValues = null)
    {
        const float initial = 1f;
        using (var graph = new CommandGraph(ctx, profiling: false))
        {
            graph.Fill(c, s.Accumulate ? BitConverter.SingleToUInt32Bits(initial) : BitConverter.SingleToUInt32Bits(float.NaN));
            MatMulKernel.Run(graph, a, b, c, s, bPrecision);
            graph.Run();
        }

        long total = (long)s.Batch1 * s.Batch2 * s.M * s.N;
        var picks = new SortedSet<long>();
        if (total <= Samples)
            for (long i = 0; i < total; i++) picks.Add(i);
        else
        {
            var rng = new Random(0);
            while (picks.Count < Samples) picks.Add(rng.NextInt64(total));
            // The corners of the first and last matrix: edge tiles are where a tiling goes wrong.
            long matrix = (long)s.M * s.N;
            foreach (long z in new[] { 0, total / matrix - 1 })
                foreach (long e in new[] { 0L, s.N - 1, (long)(s.M - 1) * s.N, matrix - 1 })
                    picks.Add(z * matrix + e);
        }

        var outputs = picks.Select(i =>
        {
            long n = i % s.N, m = i / s.N % s.M, z = i / ((long)s.M * s.N);
            long z1 = z / s.Batch2, z2 = z % s.Batch2;
            return (z1, z2, m, n, Address: s.COffset + z1 * s.CStrideBatch1 + z2 * s.CStrideBatch2 + m * s.CStrideM + n);
        }).ToList();
        var got = Download(c, outputs.Select(o => o.Address).ToList());

        double maxRef = 0, maxDiff = 0;
        foreach (var (z1, z2, m, n, address) in outputs)
        {
            long aBase = s.AOffset + z1 * s.AStrideBatch1 + z2 * s.AStrideBatch2 + m * s.AStrideM;
            long bBase = s.BOffset + z1 * s.BStrideBatch1 + z2 * s.BStrideBatch2 + n * s.BStrideN;
            double sum = 0;
            for (long k = 0; k < s.K; k++)
            {
                float av = MatMulOperands.Value(MatMulOperands.SeedA, aBase + k * s.AStrideK);
                float bv = MatMulOperands.Stored(MatMulOperands.SeedB, bBase + k * s.BStrideK, bValues ?? bPrecision);
                // The matrix units read A, and an fp32 B, rounded to fp16.
                if (matrixUnits) (av, bv) = (ToHalf(av), bPrecision == WeightPrecision.Fp32 ? ToHalf(bv) : bv);
                sum += (double)av * bv;
            }
            double expected = s.Alpha * sum + (s.Accumulate ? initial : 0);
            double actual = got[address];
            if (!double.IsFinite(actual)) return (null, outputs.Count);
            maxRef = Math.Max(maxRef, Math.Abs(expected));
            maxDiff = Math.Max(maxDiff, Math.Abs(actual - expected));
        }
        return (maxRef > 0 ? maxDiff / maxRef : maxDiff, outputs.Count);
    }

    /// <summary>The floats at the given addresses, downloaded in windows of at most 16 Ki elements
    /// (sampled outputs lie far apart in a large C: wider windows copy mostly what is not needed).</summary>
    static Dictionary<long, float> Download(GpuBuffer c, List<long> addresses)
    {
        const long Window = 1 << 14;
        var values = new Dictionary<long, float>();
        var sorted = addresses.Distinct().Order().ToList();
        for (int i = 0; i < sorted.Count;)
        {
            long start = sorted[i];
            int j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] - start < Window) j++;
            var window = new float[sorted[j] - start + 1];
            c.Download<float>(window, start);
            for (int x = i; x <= j; x++) values[sorted[x]] = window[sorted[x] - start];
            i = j + 1;
        }
        return values;
    }

    static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    static void Print(IAnsiConsole console, BenchMatMulReport r)
    {
        console.WriteLine($"device: {r.Device.Name} ({r.Device.Driver})");
        var sw = r.Switches;
        string Tiling(string? forced) => forced ?? (sw.TuneMatMul ? "tuned per product" : "default");
        console.WriteLine($"weights: {r.Precision}; matrix units: {(sw.CooperativeMatrixEmulated ? "emulated (VKPROMPT_COOPMAT=emulate)" : sw.CooperativeMatrix ? $"on ({sw.MatrixUnits})" : r.Capabilities.CooperativeMatrixKhr || r.Capabilities.CooperativeMatrixNv ? "off (VKPROMPT_COOPMAT=0 or VKPROMPT_DISABLE_COOPMAT=1)" : "none")}; " +
                          $"tiling: portable {Tiling(sw.MatMulTiling)}{(sw.CooperativeMatrix ? $", matrix units {Tiling(sw.CoopMatTiling)}" : "")}; attention: {r.Attention}");
        var table = new Table().AddColumns("product", "per step", "M x N x K", "batch", "B", "kernel", "median ms", "TFLOP/s", "error", "");
        foreach (var p in r.Products)
            table.AddRow(Markup.Escape(p.Name), p.Count.ToString(CultureInfo.InvariantCulture), $"{p.M} x {p.N} x {p.K}{(p.Accumulate ? " +=" : "")}",
                         p.Batch.ToString(CultureInfo.InvariantCulture), $"{p.BOperand} {p.BPrecision}", Markup.Escape($"{p.Kernel} {p.Tiling}{(p.Tuning is null ? "" : " (tuned)")}"),
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
    string Precision, BenchAttention Attention, double Dropout, int Reps, int WarmupMs, bool Profiled, MatMulSwitches Switches,
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
/// products were tuned first (VKPROMPT_MATMUL_TUNE=1 on a GPU).</summary>
internal sealed record MatMulSwitches(bool CooperativeMatrix, bool CooperativeMatrixEmulated, string MatrixUnits, string? MatMulTiling, string? CoopMatTiling, bool TuneMatMul,
                                      bool HalfActivations);

/// <summary>One distinct product: its uses per step, sizes, operands and full spec, what ran (with
/// the tuner's times of each candidate tiling where it chose the tiling), its times and check. A
/// skipped product has only <see cref="Skipped"/> and its shape.</summary>
internal sealed record MatMulRow(
    string Name, IReadOnlyList<StepProductUse> Uses, int Count, int M, int N, int K, int Batch, string BOperand, string BPrecision, bool Accumulate, float Alpha,
    MatMulSpec Spec, long Flops, string? Kernel, string? Tiling, IReadOnlyList<MatMulTimedTiling>? Tuning, TimeStats? Ms, IReadOnlyList<double>? TimesMs, double? Tflops,
    double? MaxRelativeError, double Tolerance, int CheckedOutputs, bool Ok, string? Skipped)
{
    /// <summary>Milliseconds of the conversion of A to the 16-bit copy the product read, if it read one.</summary>
    public double? HalfCopyMs { get; init; }
}

internal sealed record TimeStats(double Median, double Min, double Max);

/// <summary>The step's products: how many it makes (all, and those measured), their FLOPs, and
/// Σ count·median with the TFLOP/s it comes to.</summary>
internal sealed record MatMulStepTotals(int ProductsPerStep, int MeasuredProductsPerStep, long FlopsPerStep, long MeasuredFlopsPerStep, double MsPerStep, double Tflops);
