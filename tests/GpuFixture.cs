using VkPrompt.Runtime;
using Xunit;
using Xunit.Sdk;

namespace VkPrompt.Tests;

/// <summary>One Vulkan context with validation on, shared by the "gpu" collection so tests run
/// one at a time on the queue. Set VKPROMPT_DEVICE to test another device than auto's pick.</summary>
public sealed class GpuFixture : IDisposable
{
    // The matrix units are opt-in for users but always on for tests where a device has them,
    // so every test of a product with 16-bit weights covers them too.
    public GpuContext Context { get; } = GpuContext.Create(new GpuOptions
    {
        Validation = true,
        PipelineCacheDirectory = null,
        CooperativeMatrix = Environment.GetEnvironmentVariable("VKPROMPT_DISABLE_COOPMAT") != "1",
    });

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
