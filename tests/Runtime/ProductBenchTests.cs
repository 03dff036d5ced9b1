using VkPrompt.Cli;
using VkPrompt.Diagnostics;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>ProductBench as a host calls it, without the CLI: each product measured in the order
/// given, on the kernel <see cref="MatMulKernel.Selection"/> names, timed rep by rep and within
/// tolerance of its fp64 check; a product beyond a binding skipped, the others still measured.</summary>
public sealed class ProductBenchTests(GpuFixture fixture) : GpuTest(fixture)
{
    // A weight's product x·Wᵀ, and an activation's product that accumulates and scales, batched.
    static readonly MatMulSpec Weighted = MatMulSpec.Rows(33, 47, 129, transposeB: true);
    static readonly MatMulSpec Activations = MatMulSpec.Rows(20, 9, 31) with { Accumulate = true, Alpha = 0.5f };

    [Fact]
    public void MeasuresAndChecksEachProductInOrder()
    {
        var weights = WeightPrecision.Bf16.IsSupported(Ctx.Capabilities) ? WeightPrecision.Bf16 : WeightPrecision.Fp32;
        // A step's output projections carry the residual epilogue, timed and checked onto C.
        BenchProduct[] products = [new("weight", Weighted, weights), new("activation", Activations, WeightPrecision.Fp32),
                                   new("residual", Weighted with { Epilogue = MatMulEpilogue.Residual }, weights)];
        var result = ProductBench.Run(Ctx, products, reps: 3, warmupMs: 0);

        Assert.Equal(products, result.Products.Select(m => m.Product));
        Assert.Equal(MatMulTuner.Enabled(Ctx), result.Tuned is not null);
        Assert.Equal(Ctx.Capabilities.TimestampsSupported, result.Profiled);
        foreach (var m in result.Products)
        {
            var spec = m.Product.Spec;
            Assert.Equal(Ctx.Plan.StoredPrecision(m.Product.B), m.B);
            var (kernel, tiling) = MatMulKernel.Selection(Ctx, spec, m.B);
            Assert.Equal((kernel, tiling), (m.Kernel, m.Tiling));
            Assert.Equal(ProductBench.KernelTolerance(kernel), m.Tolerance);
            Assert.Equal(3, m.TimesMs!.Count);
            Assert.All(m.TimesMs, t => Assert.True(double.IsFinite(t) && t > 0, $"{m.Product.Name}: time {t}"));
            // All outputs where there are at most 256, else 256 samples and the corners.
            Assert.Equal(Math.Min((long)spec.M * spec.N * spec.Batch1 * spec.Batch2, ProductBench.Samples), m.CheckedOutputs, 8.0);
            Assert.True(m.Ok, $"{m.Product.Name}: error {m.MaxRelativeError} above {m.Tolerance}");
            Assert.Null(m.Skipped);
        }
    }

    /// <summary>Products that read and write activations kept in 16 bits, as a step with
    /// --activations bf16 or fp16 makes them: each operand in the spec's storage, on the kernel
    /// that reads it, within the tolerance that adds the rounding of a 16-bit C; and with every
    /// product on the matrix units (emulated where there are none), which read 16-bit operands
    /// straight and round them to fp16.</summary>
    [SkippableTheory]
    [InlineData(ActivationPrecision.Bf16, false)]
    [InlineData(ActivationPrecision.Fp16, false)]
    [InlineData(ActivationPrecision.Bf16, true)]
    public void MeasuresAndChecksProductsOn16BitActivations(ActivationPrecision storage, bool matrixUnits)
    {
        var ctx = matrixUnits ? MatrixUnitsAllProductsCtx : Ctx;
        Skip.IfNot(storage.IsSupported(ctx.Capabilities), $"{ctx.Capabilities.Name} has no 16-bit storage buffers");
        const ActivationPrecision fp32 = ActivationPrecision.Fp32;
        BenchProduct[] products =
        [
            // q = x·Wᵀ from the 16-bit normed input into a 16-bit q.
            new("projection", Weighted with { AStorage = storage, CStorage = storage }, WeightPrecision.Fp32),
            // scores = q·kᵀ, both 16-bit activations, into fp32 scores; P·V from fp32 P and a 16-bit
            // v into a 16-bit context, accumulating; dX = dY·W from an fp32 gradient into fp32.
            new("scores", MatMulSpec.AttentionQKt(2, 3, 9, 11, 8) with { AStorage = storage, BStorage = storage }, WeightPrecision.Fp32),
            new("context", MatMulSpec.AttentionPV(2, 3, 9, 11, 8) with { BStorage = storage, CStorage = storage, Accumulate = true }, WeightPrecision.Fp32),
            new("gradient", Activations with { AStorage = fp32, CStorage = fp32 }, WeightPrecision.Fp32),
        ];
        var result = ProductBench.Run(ctx, products, reps: 2, warmupMs: 0);

        Assert.Equal(products, result.Products.Select(m => m.Product));
        foreach (var m in result.Products)
        {
            var spec = m.Product.Spec;
            var (kernel, tiling) = MatMulKernel.Selection(ctx, spec, m.B);
            Assert.Equal(matrixUnits, MatMulKernel.IsMatrixUnitsKernel(kernel));
            Assert.Equal((kernel, tiling), (m.Kernel, m.Tiling));
            bool half = spec.AStorage != fp32 || spec.BStorage != fp32 || spec.CStorage != fp32;
            if (!MatMulKernel.IsMatrixUnitsKernel(kernel)) Assert.Equal(half ? "matmul_half" : "matmul", kernel);
            double u = spec.CStorage == fp32 ? 0 : storage.UnitRoundoff();
            double t = ProductBench.KernelTolerance(kernel);
            Assert.Equal(t + u * (1 + t), m.Tolerance);
            Assert.True(m.Ok, $"{m.Product.Name}: error {m.MaxRelativeError} above {m.Tolerance}");
            // A 16-bit C's rounding shows: the error is of its order, not of fp32 sums'.
            if (spec.CStorage != fp32 && !MatMulKernel.IsMatrixUnitsKernel(kernel))
                Assert.True(m.MaxRelativeError > storage.UnitRoundoff() / 16, $"{m.Product.Name}: error {m.MaxRelativeError} too small for a {storage.Name()} C");
        }
    }

    [Fact]
    public void SkipsAProductBeyondABindingAndMeasuresTheOthers()
    {
        // 64 KiB bindings: a [200, 129] fp32 A (103 KB) does not fit, the products above do.
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, MaxStorageBufferRangeOverride = 64 * 1024 });
        var tooLarge = MatMulSpec.Rows(200, 47, 129, transposeB: true);
        BenchProduct[] products = [new("fits", Weighted, WeightPrecision.Fp32), new("too large", tooLarge, WeightPrecision.Fp32), new("fits too", Activations, WeightPrecision.Fp32)];
        var result = ProductBench.Run(ctx, products, reps: 1, warmupMs: 0);

        Assert.Equal(64 * 1024, result.BindingLimit);
        var skipped = result.Products[1];
        Assert.Contains("maxStorageBufferRange", skipped.Skipped, StringComparison.Ordinal);
        Assert.Null(skipped.TimesMs);
        Assert.Null(skipped.Kernel);
        Assert.False(skipped.Ok);
        Assert.All(new[] { result.Products[0], result.Products[2] }, m => Assert.True(m.Ok, m.Product.Name));
        Assert.Empty(ctx.Validation.Errors);
    }
}
