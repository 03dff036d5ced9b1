using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>The softmax kernels' rows by subgroup (<see cref="Rows.SubgroupRows"/>,
/// VKPROMPT_ROW_SUBGROUP): rows that a subgroup keeps in registers take one; longer ones, every
/// row where the switch is off, and every row where the pipeline's subgroups are smaller than the
/// SUBGROUP_ROWS it was specialized with take a workgroup, all with the references' results.</summary>
public sealed class SubgroupRowsTests
{
    [Fact]
    public void RowsASubgroupKeepsInRegistersTakeOne()
    {
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = null });
        int size = (int)ctx.Capabilities.SubgroupSize;
        Assert.Equal(size, Rows.SubgroupRows(ctx, 32 * size));
        Assert.Equal(0, Rows.SubgroupRows(ctx, 32 * size + 1));
        var (local, cache, subgroupRows, groups) = Rows.Shape(ctx, 1000, 20 * size);
        Assert.Equal((20, size), (cache, subgroupRows));
        Assert.Equal((uint)((1000 + local / size - 1) / (local / size)), groups.X);
        using var off = GpuContext.Create(EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = null, SubgroupRows = false });
        Assert.Equal(0, Rows.SubgroupRows(off, 20 * size));
    }

    public static TheoryData<string> Modes => new() { "workgroup per row (VKPROMPT_ROW_SUBGROUP=0)", "subgroups smaller than SUBGROUP_ROWS" };

    [Theory, MemberData(nameof(Modes))]
    public void SoftmaxKernelsMatchTheReferencesWithAWorkgroupPerRow(string mode)
    {
        int actual;
        using (var defaults = GpuContext.Create(EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = null }))
            actual = (int)defaults.Capabilities.SubgroupSize;
        var options = EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null };
        options = mode.StartsWith("workgroup") ? options with { SubgroupRows = false } : options with { SubgroupRowsOverride = 8 * actual };
        using var ctx = GpuContext.Create(options);
        // Rows short enough for a subgroup by default (at most 32 elements an invocation), causal,
        // with dropout on the probabilities in the backward: everything the subgroup mode changes.
        foreach (int keys in new[] { 7, 4 * actual + 3 })
            RowLocalSizeTests.SoftmaxMatchesReference(ctx, new AttentionShape(2, 3, 5, keys, Causal: true), $"{mode}, {keys} keys");
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
    }
}
