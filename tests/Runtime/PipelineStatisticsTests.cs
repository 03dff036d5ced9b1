using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>VKPROMPT_PIPELINE_STATS=1 (<see cref="GpuOptions.PipelineStatistics"/>): where the
/// device reports what it compiled a pipeline into, every kernel carries those statistics, with at
/// least one non-zero count (a compute shader uses registers); where it does not (lavapipe in CI),
/// the request changes nothing else, the kernels still run, and they carry none.</summary>
public sealed class PipelineStatisticsTests
{
    [Fact]
    public void KernelsCarryTheDriversStatisticsWhereItReportsThem()
    {
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, PipelineStatistics = true });
        Assert.Equal(ctx.Capabilities.PipelineExecutableStatistics, ctx.PipelineStatistics);
        using var x = GpuBuffer.From<float>(ctx, [1f, 2f, 3f]);
        using var y = GpuBuffer.From<float>(ctx, [10f, 20f, 30f]);
        using (var g = new CommandGraph(ctx))
        {
            AddKernel.Forward(g, x, y, 3);
            g.Run();
        }
        Assert.Equal([11f, 22f, 33f], x.Download<float>());
        var kernel = Assert.Single(ctx.Kernels);
        Assert.Equal("add", kernel.Name);
        Assert.Equal([Grid.LinearSize], kernel.Specialization);
        if (ctx.PipelineStatistics)
            Assert.Contains(kernel.Statistics, s => s.Value > 0 && s.Name.Length > 0 && s.Executable.Length > 0);
        else
            Assert.Empty(kernel.Statistics);
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
    }
}
