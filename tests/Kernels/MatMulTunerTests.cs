using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Kernels;

/// <summary>MatMulTuner: it keeps the candidate with the lowest median time, per class of products
/// that select the same kernel, and Run and Selection use that from then on, unless a tiling
/// variable forces another. Each test has contexts of its own, since a tuning stays with its
/// context; the production path skips CPU devices, so the tests call the tuner explicitly.</summary>
[Collection(GpuCollections.Kernels)]
public sealed class MatMulTunerTests : IDisposable
{
    readonly List<GpuContext> contexts = new();
    readonly List<string> log = new();

    static readonly MatMulTiling[] Portable = [MatMulTiling.Staged, MatMulTiling.StagedDeep, MatMulTiling.StagedNarrow, MatMulTiling.StagedSmall];

    GpuContext Context(string? matMulTiling = null, string? coopMatTiling = null, bool cooperativeMatrix = false, bool tune = false, bool emulation = false)
    {
        var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with
        {
            Validation = true, PipelineCacheDirectory = null, Log = log.Add,
            MatMulTiling = matMulTiling, MatrixUnitsTiling = coopMatTiling, TuneMatMul = tune,
            MatrixUnits = emulation ? MatrixUnitsRequest.Emulate : cooperativeMatrix ? MatrixUnitsRequest.Auto : MatrixUnitsRequest.Off,
        });
        contexts.Add(ctx);
        return ctx;
    }

    public void Dispose()
    {
        var errors = contexts.SelectMany(c => c.Validation.Errors).ToList();
        foreach (var ctx in contexts) ctx.Dispose();
        Assert.True(errors.Count == 0, $"{errors.Count} Vulkan validation error(s):\n" + string.Join("\n", errors));
    }

    List<string> TuningLines() => log.Where(l => l.StartsWith("matmul tuning: ", StringComparison.Ordinal)).ToList();

    static List<string> FittingTilings(GpuContext ctx) => Portable.Where(t => t.Fits(ctx.Capabilities)).Select(t => t.Text).ToList();

    [Fact]
    public void KeepsTheLowestMedianAndRunAndSelectionUseIt()
    {
        var ctx = Context();
        var spec = MatMulSpec.Rows(130, 72, 40, transposeB: true) with { Alpha = 0.5f };
        var rule = MatMulKernel.Selection(ctx, spec);
        // 128x64 blocks: neither the rule's choice on a CPU device (streamed) nor on a GPU (64x64
        // blocks for a product this small), so only the tuning can select it.
        string narrow = MatMulTiling.StagedNarrow.Text;
        Assert.NotEqual(narrow, rule.Tiling);
        var timed = new List<string>();
        // Narrow's median is the lowest, but its mean is the highest and its minimum not the lowest.
        IReadOnlyList<double> Time(MatMulSpec s, WeightPrecision b, MatMulChoice c)
        {
            Assert.Equal(spec, s);
            Assert.Equal(WeightPrecision.Fp32, b);
            timed.Add(c.Tiling);
            return c.Tiling == narrow ? [9, 1, 1, 1, 9] : [2, 2, 0.5, 2, 2];
        }

        var tuning = Assert.Single(MatMulTuner.Tune(ctx, [(spec, WeightPrecision.Fp32)], Time));
        Assert.Equal(FittingTilings(ctx), timed);
        Assert.Equal(timed, tuning.Candidates.Select(c => c.Tiling));
        Assert.Equal(tuning.Candidates.Select(c => c.Tiling == narrow ? 1.0 : 2.0), tuning.Candidates.Select(c => c.MedianMs));
        Assert.Equal(("matmul", narrow), (tuning.Kernel, tuning.Tiling));
        Assert.Equal(("matmul", narrow), MatMulKernel.Selection(ctx, spec));
        Assert.Same(tuning, MatMulTuner.Find(ctx, spec, WeightPrecision.Fp32));
        var line = Assert.Single(TuningLines());
        Assert.All(timed, t => Assert.Contains(t, line, StringComparison.Ordinal));

        // Tuned once per context: asked again, it times nothing.
        Assert.Empty(MatMulTuner.Tune(ctx, [(spec, WeightPrecision.Fp32)], (_, _, _) => throw new InvalidOperationException("timed twice")));

        // The product through Run, now in 128x64 blocks, is still right.
        var a = Check.Random(130 * 40, 1);
        var b = Check.Random(72 * 40, 2);
        var c = Check.Random(130 * 72, 3);
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var gb = GpuBuffer.From<float>(ctx, b);
        using var gc = GpuBuffer.From<float>(ctx, c);
        using (var g = new CommandGraph(ctx))
        {
            MatMulKernel.Run(g, ga, gb, gc, spec);
            g.Run();
        }
        MatMulReference.Run(a, b, c, spec);
        Check.Close(c, gc.Download<float>(), 1e-5, "tuned 130x72x40");
    }

    /// <summary>A real tuning on the test device, of a product that accumulates into an offset C,
    /// with fp32 and with 16-bit B: every candidate timed 5 times, the fastest median kept, and the
    /// product computed through Run with it matches the reference.</summary>
    [SkippableTheory]
    [InlineData(WeightPrecision.Fp32)]
    [InlineData(WeightPrecision.Bf16)]
    [InlineData(WeightPrecision.Int8)]
    public void TunesOnTheDeviceAndTheProductStaysRight(WeightPrecision precision)
    {
        var ctx = Context();
        Skip.IfNot(precision.IsSupported(ctx.Capabilities), $"{ctx.Capabilities.Name} has no 16-bit storage");
        var spec = MatMulSpec.Rows(70, 36, 33, transposeB: true) with { Alpha = -0.75f, Accumulate = true, COffset = 4, CStrideM = 40 };
        var tuning = Assert.Single(MatMulTuner.Tune(ctx, [(spec, precision)]));
        Assert.Equal(FittingTilings(ctx), tuning.Candidates.Select(c => c.Tiling));
        foreach (var c in tuning.Candidates)
        {
            Assert.Equal(5, c.TimesMs.Count);
            Assert.All(c.TimesMs, t => Assert.True(double.IsFinite(t) && t > 0, $"{c.Tiling}: {t} ms"));
            Assert.Equal(DispatchTimer.Median(c.TimesMs), c.MedianMs);
        }
        Assert.Equal(tuning.Candidates.MinBy(c => c.MedianMs)!.Tiling, tuning.Tiling);
        string kernel = precision switch { WeightPrecision.Fp32 => "matmul", WeightPrecision.Int8 => "matmul_int8", _ => "matmul_half" };
        Assert.Equal((kernel, tuning.Tiling), MatMulKernel.Selection(ctx, spec, precision));
        Assert.Single(TuningLines());

        var a = Check.Random(70 * 33, 4);
        var b = Check.Random(36 * 33, 5);
        // int8: 36 rows of 33 bytes (1188, whole words) and a scale each.
        var q = new sbyte[b.Length];
        var scales = new float[36];
        if (precision == WeightPrecision.Int8)
        {
            Int8Rows.Encode(b, 33, q, scales);
            Int8Rows.Round(b, 33);
        }
        else HalfFloat.Round(b, precision);
        var c0 = Check.Random(4 + 70 * 40, 6);
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var gb = precision switch
        {
            WeightPrecision.Fp32 => GpuBuffer.From<float>(ctx, b),
            WeightPrecision.Int8 => GpuBuffer.From<sbyte>(ctx, q),
            _ => GpuBuffer.From<ushort>(ctx, Encode(b, precision)),
        };
        using var gScales = precision == WeightPrecision.Int8 ? GpuBuffer.From<float>(ctx, scales) : null;
        using var gc = GpuBuffer.From<float>(ctx, c0);
        using (var g = new CommandGraph(ctx))
        {
            MatMulKernel.Run(g, ga, gb, gc, spec, precision, gScales);
            g.Run();
        }
        MatMulReference.Run(a, b, c0, spec);
        Check.Close(c0, gc.Download<float>(), 1e-5, $"tuned {tuning.Tiling} {precision}");
    }

    /// <summary>On the matrix units (the device's, else emulated) the candidates are theirs, and the
    /// product keeps rounding A to fp16: the tuner never moves a product to the portable kernel.</summary>
    [SkippableFact]
    public void OnTheMatrixUnitsItChoosesAmongTheirTilings()
    {
        var ctx = Context(cooperativeMatrix: true);
        if (!ctx.UsesMatrixUnits) ctx = Context(emulation: true);
        var expected = MatrixUnitsTiling.Candidates.Where(t => t.Fits(ctx)).Select(t => t.Text).ToList();
        Skip.If(expected.Count < 2, $"{ctx.Capabilities.Name}'s shared memory holds one matrix-unit tiling, {string.Join("", expected)}: nothing to choose");
        var spec = MatMulSpec.Rows(200, 136, 100, transposeB: true);
        var tuning = Assert.Single(MatMulTuner.Tune(ctx, [(spec, WeightPrecision.Bf16)]));
        Assert.Equal(expected, tuning.Candidates.Select(c => c.Tiling));
        Assert.Equal((MatMulKernel.MatrixUnitsShader(ctx), tuning.Tiling), MatMulKernel.Selection(ctx, spec, WeightPrecision.Bf16));
        // fp32 products stay on the portable kernel, tuned among its tilings.
        Assert.Equal("matmul", Assert.Single(MatMulTuner.Tune(ctx, [(spec, WeightPrecision.Fp32)])).Kernel);
    }

    /// <summary>VKPROMPT_MATMUL_TILING (GpuOptions.MatMulTiling) forces the portable tiling: the
    /// tuner times none of its products, and the forced tiling wins even over a tuning the context
    /// holds. Forcing the matrix units' tiling leaves the portable product's to the tuner.</summary>
    [Fact]
    public void AForcedTilingWins()
    {
        var spec = MatMulSpec.Rows(130, 72, 40, transposeB: true);
        const string forced = "16x16x4x4x16";
        var ctx = Context(matMulTiling: forced);
        Assert.Empty(MatMulTuner.Tune(ctx, [(spec, WeightPrecision.Fp32)], (_, _, _) => throw new InvalidOperationException("a forced tiling was timed")));
        Assert.Equal(("matmul", forced), MatMulKernel.Selection(ctx, spec));
        ctx.MatMulTunings.Add(new MatMulTuning(spec, WeightPrecision.Fp32, "matmul", MatMulTiling.StagedNarrow.Text, []) { Choice = new(MatMulTiling.StagedNarrow) });
        Assert.Equal(("matmul", forced), MatMulKernel.Selection(ctx, spec));

        var coopForced = Context(coopMatTiling: "2x2x2x2x32");
        string small = MatMulTiling.StagedSmall.Text;
        var tuning = Assert.Single(MatMulTuner.Tune(coopForced, [(spec, WeightPrecision.Fp32)], (_, _, c) => c.Tiling == small ? [1.0] : [2.0]));
        Assert.Equal(small, tuning.Tiling);
        Assert.Equal(("matmul", small), MatMulKernel.Selection(coopForced, spec));
    }

    /// <summary>Products that differ only in what selects another kernel variant (which stride of
    /// B is 1; whether A's rows start on multiples of 4; B's precision; the epilogue, and whether
    /// it drops, which sends every tile of the matrix units through the staged store) are tuned apart, each
    /// keeping its own choice; one that differs only in alpha, which selects nothing, shares
    /// its twin's.</summary>
    [Fact]
    public void ProductsThatSelectAnotherVariantAreTunedApart()
    {
        var ctx = Context();
        var bt = MatMulSpec.Rows(130, 72, 40, transposeB: true);
        var b = MatMulSpec.Rows(130, 72, 40);
        var shiftedA = bt with { AOffset = 1 };
        var scaled = bt with { Alpha = 0.5f };
        // The premise: each of them reads its operands another way than bt.
        var staged = MatMulTiling.Staged;
        Assert.NotEqual(MatMulKernel.VectorLoads(bt, staged), MatMulKernel.VectorLoads(b, staged));
        Assert.NotEqual(MatMulKernel.VectorLoads(bt, staged), MatMulKernel.VectorLoads(shiftedA, staged));
        Assert.Equal(MatMulKernel.VectorLoads(bt, staged), MatMulKernel.VectorLoads(scaled, staged));
        var products = new List<(MatMulSpec Spec, WeightPrecision B)> { (bt, WeightPrecision.Fp32), (b, WeightPrecision.Fp32), (shiftedA, WeightPrecision.Fp32) };
        if (WeightPrecision.Bf16.IsSupported(ctx.Capabilities)) products.Add((bt, WeightPrecision.Bf16));
        // int8 runs its own kernel (matmul_int8), so it is tuned apart from the 16-bit B too.
        products.Add((bt, WeightPrecision.Int8));
        var residual = bt with { Epilogue = MatMulEpilogue.Residual };
        products.Add((residual, WeightPrecision.Fp32));
        products.Add((residual with { EpilogueDropout = true }, WeightPrecision.Fp32));

        // Each product's own candidate is the fastest: the i-th product's is the i-th tiling.
        var tilings = FittingTilings(ctx);
        Assert.True(tilings.Count >= 3, $"{ctx.Capabilities.Name} fits only {string.Join(", ", tilings)}");
        string Own(MatMulSpec s, WeightPrecision p) => tilings[products.IndexOf((s, p)) % tilings.Count];
        var timed = new List<(MatMulSpec, WeightPrecision)>();
        var tunings = MatMulTuner.Tune(ctx, [.. products, (scaled, WeightPrecision.Fp32)], (s, p, c) =>
        {
            if (!timed.Contains((s, p))) timed.Add((s, p));
            return c.Tiling == Own(s, p) ? [1.0] : [2.0];
        });

        Assert.Equal(products, timed);
        Assert.Equal(products.Count, tunings.Count);
        Assert.Equal(products.Count, TuningLines().Count);
        foreach (var (s, p) in products)
            Assert.Equal(Own(s, p), MatMulKernel.Selection(ctx, s, p).Tiling);
        Assert.Equal(Own(bt, WeightPrecision.Fp32), MatMulKernel.Selection(ctx, scaled).Tiling);
    }

    /// <summary>The production path (GpuBackend, before a step is recorded) tunes only where asked
    /// to and only on GPUs: a CPU device runs the streamed product, its one tiling.</summary>
    [Fact]
    public void ATrainingStepIsTunedOnlyOnAGpuAndOnlyWhenAsked()
    {
        var off = Context();
        Assert.False(MatMulTuner.Enabled(off));
        var on = Context(tune: true);
        Assert.Equal(on.Capabilities.DeviceType != "cpu", MatMulTuner.Enabled(on));
    }

    static ushort[] Encode(float[] values, WeightPrecision p)
    {
        var halves = new ushort[values.Length];
        HalfFloat.Encode(values, halves, p);
        return halves;
    }
}
