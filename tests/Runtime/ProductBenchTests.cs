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
            Assert.Equal(MatMulKernel.IsMatrixUnitsKernel(kernel) ? ProductBench.Fp16Tolerance : ProductBench.Fp32Tolerance, m.Tolerance);
            Assert.Equal(3, m.TimesMs!.Count);
            Assert.All(m.TimesMs, t => Assert.True(double.IsFinite(t) && t > 0, $"{m.Product.Name}: time {t}"));
            // All outputs where there are at most 256, else 256 samples and the corners.
            Assert.Equal(Math.Min((long)spec.M * spec.N * spec.Batch1 * spec.Batch2, ProductBench.Samples), m.CheckedOutputs, 8.0);
            Assert.True(m.Ok, $"{m.Product.Name}: error {m.MaxRelativeError} above {m.Tolerance}");
            Assert.Null(m.Skipped);
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
