using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using Xunit;
using Xunit.Sdk;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>The suite trusts "no validation errors" only if an error would be seen: these
/// tests make the layer report one and check it reaches the log and fails a GpuTest.</summary>
public sealed unsafe class ValidationTests
{
    /// <summary>A zero-sized buffer is invalid usage (VUID-VkBufferCreateInfo-size-00912) that
    /// drivers survive, unlike a dispatch on a destroyed buffer.</summary>
    static void CreateZeroSizedBuffer(GpuContext ctx)
    {
        var info = new BufferCreateInfo
        {
            SType = StructureType.BufferCreateInfo,
            Size = 0,
            Usage = BufferUsageFlags.StorageBufferBit,
            SharingMode = SharingMode.Exclusive,
        };
        if (ctx.Vk.CreateBuffer(ctx.Device, &info, null, out var buffer) == Result.Success)
            ctx.Vk.DestroyBuffer(ctx.Device, buffer, null);
    }

    [Fact]
    public void LayerErrorsReachTheContextLog()
    {
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null });
        Assert.Equal(0, ctx.Validation.ErrorCount);
        CreateZeroSizedBuffer(ctx);
        Assert.True(ctx.Validation.ErrorCount > 0, "the validation layer reported nothing");
        Assert.Contains(ctx.Validation.Errors, e => e.Contains("VUID-VkBufferCreateInfo-size-00912", StringComparison.Ordinal));
    }

    sealed class Probe(GpuFixture fixture) : GpuTest(fixture)
    {
        public GpuContext Context => Ctx;
    }

    [Fact]
    public void GpuTestFailsWhenAValidationErrorHappensDuringIt()
    {
        using var fixture = new GpuFixture();
        var probe = new Probe(fixture);
        CreateZeroSizedBuffer(probe.Context);
        var failure = Assert.Throws<XunitException>(probe.Dispose);
        Assert.Contains("VUID-VkBufferCreateInfo-size-00912", failure.Message, StringComparison.Ordinal);
    }
}
