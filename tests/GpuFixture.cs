using VkPrompt.Runtime;
using Xunit;
using Xunit.Sdk;

namespace VkPrompt.Tests;

/// <summary>One Vulkan context with validation on, shared by the "gpu" collection so tests run
/// one at a time on the queue. Set VKPROMPT_DEVICE to test another device than auto's pick.</summary>
public sealed class GpuFixture : IDisposable
{
    public GpuContext Context { get; } = GpuContext.Create(new GpuOptions { Validation = true, PipelineCacheDirectory = null });

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
