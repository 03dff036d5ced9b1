using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Cli.Commands;
using VkPrompt.Diagnostics;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>`vkprompt bench matmul` in-process on the test device: the products of a t5-small step
/// at a tiny batch with the sizes and counts worked out here from the config's numbers, every one
/// timed and within tolerance of its fp64 check; products too large for a binding skipped with a
/// note; bad arguments refused; and the check itself catching a wrong product. In a GPU
/// collection (<see cref="GpuCollections"/>) so that it runs alone among that collection's tests.</summary>
[Collection(GpuCollections.Rest)]
public sealed class BenchMatMulCommandTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    static CliRun BenchMatMul(params string[] args) => CliRun.Of(["bench", "matmul", .. args]);

    // The brief's example: t5-small, batch 1 x (8 input + 4 prompt) -> 8 target tokens. Attention
    // is pinned unfused so its products are in the step whatever VKPROMPT_ATTENTION says.
    string[] Small(string precision, string activations = "fp32") =>
        ["--shape", "t5-small", "--batch-size", "1", "--input-length", "8", "--target-length", "8", "--prompt-length", "4", "--reps", "2",
         "--precision", precision, "--activations", activations, "--attention", "unfused", "--json", dir.File($"mm-{precision}-{activations}.json")];

    /// <summary>(M, N, K, batch, B operand, accumulates, A read transposed, B read transposed):
    /// what tells two products of a step apart in the report.</summary>
    readonly record struct Key(int M, int N, int K, int Batch, string B, bool Accumulate, bool ATransposed, bool BTransposed, bool Residual);

    /// <summary>The products of one t5-small training step (ReLU, tied embeddings, dropout 0.1, every
    /// attention unfused) at batch 1, 12 encoder and 8 decoder tokens, from the config's numbers.</summary>
    static Dictionary<Key, int> T5SmallStep()
    {
        const int b = 1, le = 8 + 4, ld = 8, d = 512, heads = 8, dkv = 64, inner = heads * dkv, ff = 2048, vocab = 32128, ne = 6, nd = 6;
        const int enc = b * le, dec = b * ld;
        var step = new Dictionary<Key, int>();
        void Add(int m, int n, int k, int count, int batch = 1, string operand = "weight", bool acc = false, bool aT = false, bool bT = false, bool residual = false) =>
            step[new Key(m, n, k, batch, operand, acc, aT, bT, residual)] = step.GetValueOrDefault(new Key(m, n, k, batch, operand, acc, aT, bT, residual)) + count;
        // Forward: x·Wᵀ with W stored [out, in]; each residual branch's o and wo store stream +
        // dropout(branch) themselves (the residual epilogue), products apart from same-shaped ones.
        Add(enc, inner, d, 3 * ne + 2 * nd, bT: true);       // encoder q, k, v; cross-attention k, v over the encoder output
        Add(enc, d, inner, ne, bT: true, residual: true);    // encoder o
        Add(enc, ff, d, ne, bT: true);                       // encoder wi (ReLU: one)
        Add(enc, d, ff, ne, bT: true, residual: true);       // encoder wo
        Add(dec, inner, d, 3 * nd + nd, bT: true);           // decoder q, k, v; cross-attention q
        Add(dec, d, inner, 2 * nd, bT: true, residual: true); // decoder self and cross o
        Add(dec, ff, d, nd, bT: true);
        Add(dec, d, ff, nd, bT: true, residual: true);
        Add(dec, vocab, d, 1, bT: true);                     // LM head (tied: scaled by d^-0.5)
        // Backward, activation gradients only: dX = dY·W.
        Add(dec, d, vocab, 1);                               // LM head
        Add(dec, ff, d, nd);                                 // decoder wo
        Add(dec, d, ff, nd);                                 // decoder wi
        Add(dec, inner, d, nd + (nd - 1));                   // cross o; self o except the bottom layer's
        Add(enc, d, inner, 2 * nd, acc: true);               // cross k, v into the encoder output's gradient
        Add(dec, d, inner, nd + (nd - 1));                   // cross q; self q
        Add(dec, d, inner, 2 * (nd - 1), acc: true);         // self k, v
        Add(enc, ff, d, ne);
        Add(enc, d, ff, ne);
        Add(enc, inner, d, ne);                              // encoder o
        Add(enc, d, inner, ne);                              // encoder q
        Add(enc, d, inner, 2 * ne, acc: true);               // encoder k, v
        // Attention per (batch, head), fp32 activations as B: QKᵀ and P·V forward; dP = dO·Vᵀ,
        // dQ = dS·K, dK = dSᵀ·Q and dV = Pᵀ·dO backward (not the bottom decoder self-attention).
        foreach (var (lq, lk, fwd, bwd) in new[] { (le, le, ne, ne), (ld, ld, nd, nd - 1), (ld, le, nd, nd) })
        {
            Add(lq, lk, dkv, fwd + bwd, b * heads, "activation", bT: true);
            Add(lq, dkv, lk, fwd + bwd, b * heads, "activation");
            Add(lk, dkv, lq, 2 * bwd, b * heads, "activation", aT: true);
        }
        return step;
    }

    /// <summary>With --activations bf16 each product reads and writes the step's tensors as the
    /// step stores them: some a bf16 A, B (attention's) and C, on the kernel that reads them,
    /// checked within the bound that adds the rounding of a bf16 C.</summary>
    [Theory]
    [InlineData("fp32", "fp32")]
    [InlineData("bf16", "fp32")]
    [InlineData("int8", "fp32")]
    [InlineData("fp32", "bf16")]
    public void TimesAndChecksEveryProductOfTheStep(string precision, string activations)
    {
        var run = BenchMatMul(Small(precision, activations)).Succeeded();
        Assert.Contains("TFLOP/s", run.Out, StringComparison.Ordinal);
        Assert.Contains($"activations: {activations}", run.Out, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File($"mm-{precision}-{activations}.json")));
        var r = json.RootElement;
        Assert.Equal(activations, r.GetProperty("activations").GetString());
        Assert.Equal("vkprompt-bench-matmul/1", r.GetProperty("schema").GetString());
        Assert.Equal("vulkan", r.GetProperty("device").GetProperty("api").GetString());
        Assert.True(r.GetProperty("capabilities").GetProperty("subgroupSize").GetInt32() > 0);
        Assert.Equal(precision, r.GetProperty("precision").GetString());
        Assert.Equal("t5-small", r.GetProperty("model").GetProperty("shape").GetString());
        Assert.Equal(2, r.GetProperty("reps").GetInt32());
        bool coopmat = r.GetProperty("switches").GetProperty("cooperativeMatrix").GetBoolean();
        bool emulated = r.GetProperty("switches").GetProperty("cooperativeMatrixEmulated").GetBoolean();
        Assert.True(coopmat || !emulated);
        // Tuned only where VKPROMPT_MATMUL_TUNE=1 asks for it, and never on a CPU device.
        bool tuned = r.GetProperty("switches").GetProperty("tuneMatMul").GetBoolean();
        Assert.Equal(EnvironmentSettings.GpuOptions().TuneMatMul && r.GetProperty("capabilities").GetProperty("deviceType").GetString() != "cpu", tuned);

        // Pipeline statistics only where VKPROMPT_PIPELINE_STATS=1 asks and the device reports them.
        if (!EnvironmentSettings.GpuOptions().PipelineStatistics || !r.GetProperty("capabilities").GetProperty("pipelineExecutableStatistics").GetBoolean())
            Assert.Equal(JsonValueKind.Null, r.GetProperty("pipelines").ValueKind);

        var rows = r.GetProperty("products").EnumerateArray().ToList();
        var seen = new Dictionary<Key, int>();
        var storages = new List<(string A, string B, string C)>();
        double stepMs = 0;
        long stepFlops = 0;
        foreach (var p in rows)
        {
            string name = p.GetProperty("name").GetString()!;
            var spec = p.GetProperty("spec");
            int m = p.GetProperty("m").GetInt32(), n = p.GetProperty("n").GetInt32(), k = p.GetProperty("k").GetInt32(), batch = p.GetProperty("batch").GetInt32();
            int count = p.GetProperty("count").GetInt32();
            string operand = p.GetProperty("bOperand").GetString()!;
            var key = new Key(m, n, k, batch, operand, p.GetProperty("accumulate").GetBoolean(),
                              m > 1 && spec.GetProperty("aStrideM").GetInt32() == 1, n > 1 && spec.GetProperty("bStrideK").GetInt32() == 1,
                              spec.GetProperty("epilogue").GetInt32() == (int)MatMulEpilogue.Residual);
            seen[key] = seen.GetValueOrDefault(key) + count;
            Assert.Equal(count, p.GetProperty("uses").EnumerateArray().Sum(u => u.GetProperty("count").GetInt32()));
            Assert.Equal(2L * m * n * k * batch, p.GetProperty("flops").GetInt64());

            // Weights in the asked precision, on the kernel that reads it; A, C and an activation B
            // in fp32 or the activations' storage, as the step keeps each.
            bool weight = operand == "weight";
            Assert.Equal(weight ? precision : "fp32", p.GetProperty("bPrecision").GetString());
            var storage = p.GetProperty("storage");
            var (sa, sb, sc) = (storage.GetProperty("a").GetString()!, storage.GetProperty("b").GetString()!, storage.GetProperty("c").GetString()!);
            storages.Add((sa, sb, sc));
            // The spec has them as ActivationPrecision's numbers; a weight's B storage is fp32 there.
            static int Code(string name) => (int)ActivationPrecisions.Parse(name)!.Value;
            Assert.Equal((Code(sa), weight ? Code("fp32") : Code(sb), Code(sc)), (spec.GetProperty("aStorage").GetInt32(), spec.GetProperty("bStorage").GetInt32(), spec.GetProperty("cStorage").GetInt32()));
            Assert.All(new[] { sa, sc, weight ? activations : sb }, st => Assert.Contains(st, new[] { "fp32", activations }));
            if (weight) Assert.Equal(p.GetProperty("bPrecision").GetString(), sb);
            bool half = sa != "fp32" || sc != "fp32" || !weight && sb != "fp32";
            string kernel = p.GetProperty("kernel").GetString()!;
            string units = r.GetProperty("switches").GetProperty("matrixUnits").GetString()!;
            // int8 goes to the matrix units read as A·Bᵀ only (DevicePlan.OnMatrixUnits).
            bool int8OnUnits = precision == "int8" && coopmat && spec.GetProperty("bStrideK").GetInt32() == 1;
            string build = precision == "int8" ? "matmul_coopmat_int8" : "matmul_coopmat";
            Assert.Equal(!weight || precision == "fp32" ? half ? "matmul_half" : "matmul"
                         : precision == "int8" && !int8OnUnits ? half ? "matmul_int8_half" : "matmul_int8"
                         : coopmat ? units switch { "emulated" => build + "_emulated", "khr" => build + "_khr", _ => build } : "matmul_half", kernel);
            Assert.Matches(@"^\d+x\d+x\d+x\d+x\d+$", p.GetProperty("tiling").GetString());
            // Where the tuner chose the tiling, it is the candidate with the lowest median.
            var tuning = p.GetProperty("tuning");
            if (!tuned) Assert.Equal(JsonValueKind.Null, tuning.ValueKind);
            else if (tuning.ValueKind != JsonValueKind.Null)
                Assert.Equal(tuning.EnumerateArray().MinBy(c => c.GetProperty("medianMs").GetDouble()).GetProperty("tiling").GetString(), p.GetProperty("tiling").GetString());

            var times = p.GetProperty("timesMs").EnumerateArray().Select(t => t.GetDouble()).ToList();
            Assert.Equal(2, times.Count);
            Assert.All(times, t => Assert.True(double.IsFinite(t) && t > 0, $"{name}: time {t}"));
            double median = p.GetProperty("ms").GetProperty("median").GetDouble();
            Assert.Equal(times.Average(), median, 1e-9);
            Assert.Equal(2.0 * m * n * k * batch / (median / 1e3) / 1e12, p.GetProperty("tflops").GetDouble(), 1e-9);

            double tolerance = p.GetProperty("tolerance").GetDouble();
            // A bf16 C adds its rounding, 2^-8 of each output at most.
            double t = kernel.EndsWith("_bf16", StringComparison.Ordinal) ? 2e-4 : MatMulKernel.IsMatrixUnitsKernel(kernel) ? 2e-3 : 1e-4;
            Assert.Equal(t + (sc == "bf16" ? Math.Pow(2, -8) * (1 + t) : 0), tolerance);
            double error = p.GetProperty("maxRelativeError").GetDouble();
            Assert.True(error >= 0 && error <= tolerance, $"{name}: error {error} above {tolerance}");
            Assert.True(p.GetProperty("ok").GetBoolean());
            Assert.Equal(Math.Min((long)m * n * batch, 256), p.GetProperty("checkedOutputs").GetInt32(), 8.0);
            Assert.Equal(JsonValueKind.Null, p.GetProperty("skipped").ValueKind);
            // A 16-bit copy of A is made only for the matrix units, and counted in the step's sum.
            var copy = p.GetProperty("halfCopyMs");
            Assert.True(copy.ValueKind == JsonValueKind.Null || MatMulKernel.IsMatrixUnitsKernel(kernel) && copy.GetDouble() > 0, $"{name}: halfCopyMs {copy}");
            stepMs += count * (median + (copy.ValueKind == JsonValueKind.Null ? 0 : copy.GetDouble()));
            stepFlops += count * 2L * m * n * k * batch;
        }
        var expected = T5SmallStep();
        foreach (var (key, count) in expected)
            Assert.True(seen.GetValueOrDefault(key) == count, $"{key}: expected {count} per step, the report has {seen.GetValueOrDefault(key)}");
        Assert.Equal(expected.Count, seen.Count);
        // One row per distinct product: with 16-bit activations one shape may be stored two ways
        // (q from the bf16 normed input, cross-attention's k from the fp32 encoder output).
        Assert.Equal(rows.Count, rows.Zip(storages).Select(rs => (rs.First.GetProperty("spec").GetRawText(), rs.Second)).Distinct().Count());
        Assert.Equal(activations == "fp32", seen.Count == rows.Count);
        // Where the step keeps 16-bit activations, its products read and write them: a bf16 A
        // (the normed input), a bf16 C (q, k, v), and bf16 activations as both attention operands.
        Assert.Equal(activations != "fp32", storages.Any(st => st.A != "fp32"));
        Assert.Equal(activations != "fp32", storages.Any(st => st.C != "fp32"));
        Assert.Equal(activations != "fp32", rows.Zip(storages).Any(rs => rs.First.GetProperty("bOperand").GetString() == "activation" && rs.Second.A != "fp32" && rs.Second.B != "fp32"));

        var step = r.GetProperty("step");
        Assert.Equal(expected.Values.Sum(), step.GetProperty("productsPerStep").GetInt32());
        Assert.Equal(expected.Values.Sum(), step.GetProperty("measuredProductsPerStep").GetInt32());
        Assert.Equal(stepFlops, step.GetProperty("flopsPerStep").GetInt64());
        Assert.Equal(stepMs, step.GetProperty("msPerStep").GetDouble(), stepMs * 1e-12);
        Assert.Equal(stepFlops / (stepMs / 1e3) / 1e12, step.GetProperty("tflops").GetDouble(), 1e-12);
        // The benchmarks' FLOP count, plus the bottom cross-attention's query gradient it leaves out.
        var shape = new BatchShape(1, 8, 8, 4);
        long bottomCrossQuery = 2L * 8 * 12 * 512 + 2L * 8 * 512 * 512;
        Assert.Equal(StepFlops.Total(T5Config.Named("t5-small"), shape) + bottomCrossQuery, stepFlops);
    }

    [Fact]
    public void SkipsAProductBeyondABindingWithANote()
    {
        // A vocabulary of 2.2M x d_model 16 in fp32 is a 134 MB LM head, more than lavapipe's
        // 128 MiB maxStorageBufferRange; a GPU binds it and runs it.
        var config = ModelTestFiles.Tiny() with { VocabSize = 2_200_000, DModel = 16, NumLayers = 1, NumDecoderLayers = 1 };
        Directory.CreateDirectory(dir.File("huge-vocab"));
        File.WriteAllText(dir.File("huge-vocab/config.json"), config.ToJson());
        var run = BenchMatMul("--shape", dir.File("huge-vocab"), "--batch-size", "1", "--input-length", "8", "--target-length", "8", "--prompt-length", "4",
                              "--reps", "1", "--warmup-ms", "0", "--json", dir.File("huge.json")).Succeeded();
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("huge.json")));
        var r = json.RootElement;
        Assert.Equal("huge-vocab", r.GetProperty("model").GetProperty("shape").GetString());
        var caps = r.GetProperty("capabilities");
        long limit = Math.Min(caps.GetProperty("maxStorageBufferRange").GetInt64(), caps.GetProperty("maxMemoryAllocationSize").GetInt64());
        bool fits = 4L * config.VocabSize * config.DModel <= limit;
        var lmHead = r.GetProperty("products").EnumerateArray().Where(p => p.GetProperty("name").GetString()!.StartsWith("lm head", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, lmHead.Count);
        foreach (var p in lmHead)
        {
            if (fits)
            {
                Assert.True(p.GetProperty("ok").GetBoolean());
                continue;
            }
            Assert.Contains("maxStorageBufferRange", p.GetProperty("skipped").GetString(), StringComparison.Ordinal);
            Assert.Equal(JsonValueKind.Null, p.GetProperty("ms").ValueKind);
            Assert.False(p.GetProperty("ok").GetBoolean());
        }
        var others = r.GetProperty("products").EnumerateArray().Except(lmHead).ToList();
        Assert.All(others, p => Assert.True(p.GetProperty("ok").GetBoolean(), p.GetProperty("name").GetString()));
        var step = r.GetProperty("step");
        Assert.Equal(step.GetProperty("productsPerStep").GetInt32() - (fits ? 0 : 2), step.GetProperty("measuredProductsPerStep").GetInt32());
        if (!fits)
        {
            Assert.Contains("skipped 'lm head x1'", run.Out, StringComparison.Ordinal);
            Assert.Contains(r.GetProperty("notes").EnumerateArray(), n => n.GetString()!.Contains("maxStorageBufferRange", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("must be positive", "--reps", "0")]
    [InlineData("must not be negative", "--warmup-ms", "-1")]
    [InlineData("must be a multiple of 8", "--input-length", "12")]
    [InlineData("not benchmarked", "--device", "cpu")]
    [InlineData("'fp8' not recognized", "--precision", "fp8")]
    [InlineData("'fp8' not recognized", "--activations", "fp8")]
    [InlineData("its directory does not exist", "--json", "/no/such/dir/mm.json")]
    [InlineData("neither t5-small", "--shape", "t5-tiny")]
    public void RefusesBadArgumentsWithExitTwo(string says, string option, string value)
    {
        var args = Small("fp32").ToList();
        int at = args.IndexOf(option);
        if (at >= 0) args[at + 1] = value;
        else args.AddRange([option, value]);
        var run = BenchMatMul([.. args]);
        Assert.Equal(CliConventions.UserError, run.ExitCode);
        Assert.Contains(says, Assert.Single(CliRun.Lines(run.Err)), StringComparison.Ordinal);
        Assert.Equal("", run.Out);
        Assert.False(File.Exists(dir.File("mm-fp32-fp32.json")));
    }

    [Fact]
    public void ShapeIsRequiredOfBothBenchAndBenchMatMul()
    {
        var matmul = BenchMatMul("--batch-size", "1");
        Assert.Equal(CliConventions.UserError, matmul.ExitCode);
        Assert.Contains("'--shape' is required (see 'vkprompt bench matmul --help')", matmul.Err, StringComparison.Ordinal);
        var bench = CliRun.Of("bench", "--batch-size", "1");
        Assert.Equal(CliConventions.UserError, bench.ExitCode);
        Assert.Contains("'--shape' is required (see 'vkprompt bench --help')", bench.Err, StringComparison.Ordinal);
        // bench's own options stay its own: matmul has no --steps.
        Assert.Equal(CliConventions.UserError, BenchMatMul("--shape", "t5-small", "--steps", "1").ExitCode);
    }

    [Fact]
    public void HelpExplainsItAndBenchListsIt()
    {
        var help = BenchMatMul("--help").Succeeded();
        Assert.Contains("vkprompt bench matmul", help.Out, StringComparison.Ordinal);
        foreach (var option in new[] { "--shape", "--batch-size", "--input-length", "--target-length", "--prompt-length", "--precision", "--reps", "--warmup-ms", "--device", "--json", "--attention", "--activations" })
            Assert.Contains(option, help.Out, StringComparison.Ordinal);
        Assert.Contains("VKPROMPT_MATMUL_TILING", help.Out, StringComparison.Ordinal);
        Assert.Contains("  matmul ", CliRun.Of("bench", "--help").Succeeded().Out, StringComparison.Ordinal);
    }
}

/// <summary>The check `bench matmul` relies on (<see cref="ProductBench.Check"/>): the fp64 reference of the operands as stored
/// agrees with a correct product and not with one computed from other operands.</summary>
public sealed class BenchMatMulCheckTests(GpuFixture fixture) : GpuTest(fixture)
{
    [SkippableTheory]
    [InlineData(WeightPrecision.Fp32, false, false)]
    [InlineData(WeightPrecision.Bf16, false, false)]
    [InlineData(WeightPrecision.Fp32, true, false)]
    [InlineData(WeightPrecision.Bf16, true, false)]
    // Every product on the matrix units (VKPROMPT_MATRIX_UNITS=all): an fp32 B is rounded to fp16 too.
    [InlineData(WeightPrecision.Fp32, false, true)]
    [InlineData(WeightPrecision.Fp32, true, true)]
    public void CatchesAWrongProduct(WeightPrecision precision, bool wrongB, bool allProducts)
    {
        var ctx = allProducts ? MatrixUnitsAllProductsCtx : Ctx;
        var spec = MatMulSpec.Rows(33, 47, 129, transposeB: true) with { Accumulate = true, Alpha = 0.5f };
        using var a = new GpuBuffer(ctx, 4 * 33 * 129);
        using var b = new GpuBuffer(ctx, precision.ElementBytes() * 47 * 129);
        using var c = new GpuBuffer(ctx, 4 * 33 * 47);
        MatMulOperands.Fill(a, 33 * 129, MatMulOperands.SeedA, WeightPrecision.Fp32);
        // The reference reads B from SeedB: another seed stands for a kernel that read the wrong values.
        MatMulOperands.Fill(b, 47 * 129, wrongB ? 99UL : MatMulOperands.SeedB, precision);
        bool coopmat = MatMulKernel.IsMatrixUnitsKernel(MatMulKernel.Selection(ctx, spec, precision).Kernel);
        Assert.True(coopmat || !allProducts);
        var (error, checkedOutputs) = ProductBench.Check(ctx, a, b, c, spec, precision, coopmat);
        Assert.Equal(33 * 47 > 256 ? 256 + 4 : 33 * 47, checkedOutputs, 4.0);
        double tolerance = coopmat ? ProductBench.Fp16Tolerance : ProductBench.Fp32Tolerance;
        Assert.NotNull(error);
        if (wrongB) Assert.True(error > 0.1, $"error {error}");
        else Assert.True(error <= tolerance, $"error {error}");
    }

    /// <summary>The same with A, an activation B and C kept in 16 bits, as a step with 16-bit
    /// activations makes its attention products: the reference reads A and B as stored and C is
    /// widened as downloaded, so a right product is within the tolerance (which adds C's
    /// rounding) and one that read other values of either operand is not.</summary>
    [SkippableTheory]
    [InlineData(ActivationPrecision.Bf16, null)]
    [InlineData(ActivationPrecision.Bf16, "A")]
    [InlineData(ActivationPrecision.Bf16, "B")]
    [InlineData(ActivationPrecision.Fp16, null)]
    [InlineData(ActivationPrecision.Fp16, "A")]
    [InlineData(ActivationPrecision.Fp16, "B")]
    public void CatchesAWrongProductOn16BitOperands(ActivationPrecision storage, string? wrong)
    {
        Skip.IfNot(storage.IsSupported(Ctx.Capabilities), $"{Ctx.Capabilities.Name} has no 16-bit storage buffers");
        var spec = MatMulSpec.AttentionPV(2, 3, 17, 33, 16) with { AStorage = storage, BStorage = storage, CStorage = storage, Accumulate = true, Alpha = 0.5f };
        var (aElems, bElems, cElems) = spec.Extents();
        using var a = GpuBuffer.Activations(Ctx, aElems, storage, "a");
        using var b = GpuBuffer.Activations(Ctx, bElems, storage, "b");
        using var c = GpuBuffer.Activations(Ctx, cElems, storage, "c");
        // Another seed stands for a kernel that read the wrong values.
        MatMulOperands.Fill(a, aElems, wrong == "A" ? 99UL : MatMulOperands.SeedA, storage);
        MatMulOperands.Fill(b, bElems, wrong == "B" ? 99UL : MatMulOperands.SeedB, storage);
        var kernel = MatMulKernel.Selection(Ctx, spec, WeightPrecision.Fp32).Kernel;
        var (error, _) = ProductBench.Check(Ctx, a, b, c, spec, WeightPrecision.Fp32, MatMulKernel.IsMatrixUnitsKernel(kernel));
        double tolerance = ProductBench.Tolerance(kernel, storage);
        Assert.NotNull(error);
        if (wrong is not null) Assert.True(error > 0.1, $"wrong {wrong}: error {error}");
        else Assert.True(error <= tolerance, $"error {error} above {tolerance}");
    }

    /// <summary>Products with an epilogue as a step with dropout runs them (the residual onto C and
    /// the relu, each dropping, <see cref="MatMulSpec.EpilogueDropout"/>): the check redraws the
    /// mask of each output's index, so the right product is within the tolerance and one whose
    /// mask came from another seed is not; on the portable kernel and the emulated matrix units,
    /// whose dropping tiles all take the staged store.</summary>
    [SkippableTheory]
    // The epilogue as MatMulEpilogue's value (the enum is internal, a theory's parameters public).
    [InlineData((int)MatMulEpilogue.Residual, false, false), InlineData((int)MatMulEpilogue.Residual, false, true), InlineData((int)MatMulEpilogue.Residual, true, false)]
    [InlineData((int)MatMulEpilogue.Relu, false, false), InlineData((int)MatMulEpilogue.Relu, true, true)]
    public void ChecksADroppingEpilogue(int epilogueValue, bool matrixUnits, bool wrongSeed)
    {
        var epilogue = (MatMulEpilogue)epilogueValue;
        var ctx = matrixUnits ? MatrixUnitsCtx : Ctx;
        var precision = matrixUnits ? WeightPrecision.Bf16 : WeightPrecision.Fp32;
        var spec = MatMulSpec.Rows(64, 48, 40, transposeB: true) with { Epilogue = epilogue, EpilogueDropout = true };
        using var a = new GpuBuffer(ctx, 4 * 64 * 40);
        using var b = new GpuBuffer(ctx, precision.ElementBytes() * 48 * 40);
        using var c = new GpuBuffer(ctx, 4 * 64 * 48);
        using var seed = GpuBuffer.From<uint>(ctx, [wrongSeed ? MatMulOperands.DropoutSeed + 1 : MatMulOperands.DropoutSeed]);
        MatMulOperands.Fill(a, 64 * 40, MatMulOperands.SeedA, WeightPrecision.Fp32);
        MatMulOperands.Fill(b, 48 * 40, MatMulOperands.SeedB, precision);
        var kernel = MatMulKernel.Selection(ctx, spec, precision).Kernel;
        Assert.Equal(matrixUnits, MatMulKernel.IsMatrixUnitsKernel(kernel));
        var (error, _) = ProductBench.Check(ctx, a, b, c, spec, precision, matrixUnits, seed: seed);
        Assert.NotNull(error);
        if (wrongSeed) Assert.True(error > 0.1, $"another mask: error {error}");
        else Assert.True(error <= ProductBench.Tolerance(kernel, ActivationPrecision.Fp32), $"error {error}");
        Assert.Throws<ArgumentException>(() => ProductBench.Check(ctx, a, b, c, spec, precision, matrixUnits));
    }
}
