using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>matrix_peak.comp, whose rate `vkprompt bench peak` reports: it must do the products it
/// is credited with, with the fragments both held and reloaded.</summary>
[Collection(GpuCollections.Kernels)]
public sealed class MatrixPeakTests(GpuFixture f) : GpuTest(f)
{
    [SkippableTheory]
    [InlineData(false, 1)]
    [InlineData(false, 7)]
    [InlineData(true, 7)]
    public void EveryAccumulatorSumsEveryIteration(bool reload, int iterations)
    {
        var ctx = MatrixUnitsCtx;
        const int workgroups = 3;
        using var c = new GpuBuffer(ctx, 4 * MatrixPeakKernel.Outputs(workgroups), "peak_c");
        using (var g = new CommandGraph(ctx))
        {
            // 0.75 and -1.5 are exact in fp16, so the sums are exact in fp32.
            MatrixPeakKernel.Run(g, c, workgroups, iterations, reload, 0.75f, -1.5f);
            g.Run();
        }
        var got = c.Download<float>();
        float expected = iterations * 16 * 0.75f * -1.5f;
        var wrong = got.Where(v => v != expected).ToList();
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {got.Length} outputs differ from {expected}, e.g. {wrong.FirstOrDefault()}");
    }

    [Fact]
    public void FlopsCountEveryProduct() =>
        Assert.Equal(2.0 * 16 * 16 * 16 * 8 * 4 * 10 * 100, MatrixPeakKernel.Flops(10, 100));
}
