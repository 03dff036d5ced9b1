using VkPrompt.Runtime;
using Xunit;
using Xunit.Sdk;

namespace VkPrompt.Tests;

/// <summary>One Vulkan context with validation on, shared by the "gpu" collection so tests run
/// one at a time on the queue. Set VKPROMPT_DEVICE to test another device than auto's pick.</summary>
public sealed class GpuFixture : IDisposable
{
    public GpuContext Context { get; } = Create();

    // The cooperative-matrix kernel is opt-in for users but always on for tests: on the device's
    // matrix units where it has them, else emulated (lavapipe in CI), so every test of a product
    // with 16-bit weights covers that kernel too. VKPROMPT_DISABLE_COOPMAT=1 tests the portable
    // product instead.
    static GpuContext Create()
    {
        bool on = Environment.GetEnvironmentVariable("VKPROMPT_DISABLE_COOPMAT") != "1";
        var options = new GpuOptions { Validation = true, PipelineCacheDirectory = null, CooperativeMatrix = on };
        var ctx = GpuContext.Create(options);
        var caps = ctx.Capabilities;
        if (!on || ctx.CooperativeMatrix || !(caps.ShaderFloat16 && caps.StorageBuffer16Bit)) return ctx;
        ctx.Dispose();
        return GpuContext.Create(options with { CooperativeMatrixEmulation = true });
    }

    public void Dispose()
    {
        Context.Dispose();
    }
}

[CollectionDefinition("gpu")]
public sealed class GpuCollection : ICollectionFixture<GpuFixture>;

/// <summary>Base of every test that touches the GPU: a validation error raised while the test
/// ran fails that test, with the layer's messages in the failure.</summary>
[Collection("gpu")]
public abstract class GpuTest : IDisposable
{
    readonly int errorsBefore;
    protected GpuContext Ctx { get; }

    protected GpuTest(GpuFixture fixture)
    {
        Ctx = fixture.Context;
        errorsBefore = Ctx.Validation.ErrorCount;
    }

    public virtual void Dispose()
    {
        var fresh = Ctx.Validation.Errors.Skip(errorsBefore).ToList();
        if (fresh.Count > 0)
            throw new XunitException($"{fresh.Count} Vulkan validation error(s):\n" + string.Join("\n", fresh));
    }
}
