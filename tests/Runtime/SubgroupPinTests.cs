using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// A kernel pinned to a subgroup size (<see cref="Kernel.RequiredSubgroupSize"/>), as the matrix
/// units' kernels are where <see cref="DevicePlan.MatrixUnitsSubgroupPinned"/>: their pipelines
/// never run on lavapipe, but the pinning is the same for any kernel, so the add kernel is pinned
/// to lavapipe's subgroup size here, under validation (which checks the pipeline's subgroup-size
/// structure, the full-subgroups flag against the workgroup size, and that the device enabled
/// the features), and must compute as unpinned.
/// </summary>
public sealed class SubgroupPinTests
{
    [SkippableFact]
    public void APinnedKernelComputesAsUnpinned()
    {
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null });
        Skip.IfNot(ctx.Capabilities.SubgroupSizeControl, $"{ctx.Capabilities.Name} cannot pin a subgroup size");
        Assert.Contains(DeviceCapabilities.SubgroupSizeControlExtension, DeviceBringUp.DeviceExtensionNames(ctx.Plan));
        uint size = ctx.Capabilities.SubgroupSize;
        var pinned = ctx.PinnedKernel("add", AddKernel.Layout, size, [Grid.LinearSize]);
        Assert.Equal(size, pinned.RequiredSubgroupSize);
        // The cache keeps the pinned and the unpinned pipeline apart.
        var unpinned = ctx.Kernel("add", AddKernel.Layout, Grid.LinearSize);
        Assert.NotSame(pinned, unpinned);
        Assert.Equal(0u, unpinned.RequiredSubgroupSize);
        Assert.Same(pinned, ctx.PinnedKernel("add", AddKernel.Layout, size, [Grid.LinearSize]));
        // More subgroups than a pinned workgroup may hold is refused before Vulkan sees it.
        int tooMany = (int)(size * ctx.Capabilities.MaxComputeWorkgroupSubgroups) + (int)size;
        var e = Assert.Throws<GpuException>(() => ctx.PinnedKernel("add", AddKernel.Layout, size, [tooMany]));
        Assert.Contains("maxComputeWorkgroupSubgroups", e.Message);
        // Full subgroups of the driver's size (the KHR kernels' where unpinned): the flag without
        // a required size, valid only for a workgroup of whole subgroups of the largest size.
        var full = ctx.PinnedKernel("add", AddKernel.Layout, 0, [Grid.LinearSize], fullSubgroups: true);
        Assert.True(full.FullSubgroups);
        Assert.Equal(0u, full.RequiredSubgroupSize);
        Assert.True(pinned.FullSubgroups);
        Assert.False(unpinned.FullSubgroups);
        e = Assert.Throws<GpuException>(() => ctx.PinnedKernel("add", AddKernel.Layout, 0, [(int)Math.Max(ctx.Capabilities.MaxSubgroupSize, size) + 1], fullSubgroups: true));
        Assert.Contains("multiple of the largest", e.Message);

        AddsAsTheReference(ctx, "add in pinned subgroups", (pinned, 0.5f), (full, 0.25f));
    }

    /// <summary>Runs the add kernels built as <paramref name="runs"/> say, x += alpha·y one after
    /// another on random vectors, and checks x against <see cref="AddReference"/>, with no
    /// validation error on <paramref name="ctx"/>.</summary>
    internal static void AddsAsTheReference(GpuContext ctx, string what, params (Kernel Kernel, float Alpha)[] runs)
    {
        const int n = 1000;
        var x = Check.Random(n, 1);
        var y = Check.Random(n, 2);
        using var gx = GpuBuffer.From<float>(ctx, x);
        using var gy = GpuBuffer.From<float>(ctx, y);
        using (var g = new CommandGraph(ctx))
        {
            foreach (var (kernel, alpha) in runs)
                g.Dispatch(kernel, Grid.Linear(n), new AddKernel.Push(n, 0, 1f, 0, alpha), gx, gy, gx, gx);
            g.Run();
        }
        foreach (var (_, alpha) in runs) AddReference.Forward(x, y, alpha);
        Check.Close(x, gx.Download<float>(), 1e-6, what);
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
    }

    /// <summary>A device whose host did not declare subgroup size control pins nothing, and a
    /// pinned kernel asked of it anyway is refused, naming the extension.</summary>
    [Fact]
    public void ADeviceThatCannotPinRefusesAPinnedKernel()
    {
        var host = new TestHost(sixteenBit: false, matrixUnits: false);
        try
        {
            using var ctx = GpuContext.Adopt(host.Declared);
            Assert.False(ctx.Capabilities.SubgroupSizeControl);
            var e = Assert.Throws<GpuException>(() => ctx.PinnedKernel("add", AddKernel.Layout, ctx.Capabilities.SubgroupSize, [Grid.LinearSize]));
            Assert.Contains("VK_EXT_subgroup_size_control", e.Message);
        }
        finally { host.Dispose(); }
        Assert.True(host.Errors.IsEmpty, string.Join("\n", host.Errors));
    }
}
