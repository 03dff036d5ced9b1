using VkPrompt.Runtime;
using Xunit;
using Xunit.Sdk;
using VkPrompt.Cli;

namespace VkPrompt.Tests;

/// <summary>One Vulkan context with validation on, shared by the "gpu" collection so tests run
/// one at a time on the queue. Set VKPROMPT_DEVICE to test another device than auto's pick.</summary>
public sealed class GpuFixture : IDisposable
{
    static readonly bool MatrixUnitsOn = EnvironmentSettings.GpuOptions().MatrixUnits != MatrixUnitsRequest.Off;

    // What users get by default: the matrix units where the device has them, so every test of a
    // product with 16-bit weights covers them there. VKPROMPT_MATRIX_UNITS=0 tests the portable
    // product there instead.
    public GpuContext Context { get; } = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null });

    readonly Lazy<GpuContext?> emulated, allProducts;

    public GpuFixture()
    {
        emulated = new(() =>
        {
            var caps = Context.Capabilities;
            if (!MatrixUnitsOn || Context.UsesMatrixUnits || !(caps.ShaderFloat16 && caps.StorageBuffer16Bit)) return null;
            return GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, MatrixUnits = MatrixUnitsRequest.Emulate });
        });
        allProducts = new(() => MatrixUnits is not { } units ? null
            : GpuContext.Create(EnvironmentSettings.GpuOptions() with
            {
                Validation = true, PipelineCacheDirectory = null, MatrixUnitsAllProducts = true,
                MatrixUnits = units.MatrixUnitsEmulated ? MatrixUnitsRequest.Emulate : EnvironmentSettings.GpuOptions().MatrixUnits,
            }));
    }

    /// <summary>A context whose products with 16-bit weights run the matrix-units kernel:
    /// <see cref="Context"/> where the device's matrix units do, else one that emulates them
    /// (lavapipe in CI), so that kernel is tested everywhere while <see cref="Context"/> keeps
    /// what users get by default; null where neither can be had.</summary>
    public GpuContext? MatrixUnits => Context.UsesMatrixUnits ? Context : emulated.Value;

    /// <summary>Like <see cref="MatrixUnits"/>, with every product on the matrix-units kernel,
    /// those of two fp32 operands too (<see cref="GpuOptions.MatrixUnitsAllProducts"/>).</summary>
    public GpuContext? MatrixUnitsAllProducts => allProducts.Value;

    internal IEnumerable<GpuContext> Contexts =>
        new[] { Context }.Concat(new[] { emulated, allProducts }.Where(l => l.IsValueCreated && l.Value is not null).Select(l => l.Value!));

    public void Dispose()
    {
        if (allProducts.IsValueCreated) allProducts.Value?.Dispose();
        if (emulated.IsValueCreated) emulated.Value?.Dispose();
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
    readonly GpuFixture fixture;
    readonly Dictionary<GpuContext, int> errorsBefore;
    protected GpuContext Ctx { get; }

    protected GpuTest(GpuFixture fixture)
    {
        this.fixture = fixture;
        Ctx = fixture.Context;
        errorsBefore = fixture.Contexts.ToDictionary(c => c, c => c.Validation.ErrorCount);
    }

    /// <summary>The context that runs the matrix-units kernel (<see cref="GpuFixture.MatrixUnits"/>);
    /// skips the test where there is none.</summary>
    protected GpuContext MatrixUnitsCtx
    {
        get
        {
            var ctx = fixture.MatrixUnits;
            Skip.If(ctx is null, $"{Ctx.Capabilities.Name} has neither matrix units this build can use nor the fp16 arithmetic to emulate them");
            return ctx!;
        }
    }

    /// <summary>The context that runs every product on the matrix-units kernel
    /// (<see cref="GpuFixture.MatrixUnitsAllProducts"/>); skips the test where there is none.</summary>
    protected GpuContext MatrixUnitsAllProductsCtx
    {
        get
        {
            var ctx = fixture.MatrixUnitsAllProducts;
            Skip.If(ctx is null, $"{Ctx.Capabilities.Name} has neither matrix units this build can use nor the fp16 arithmetic to emulate them");
            return ctx!;
        }
    }

    public virtual void Dispose()
    {
        var fresh = fixture.Contexts.SelectMany(c => c.Validation.Errors.Skip(errorsBefore.GetValueOrDefault(c))).ToList();
        if (fresh.Count > 0)
            throw new XunitException($"{fresh.Count} Vulkan validation error(s):\n" + string.Join("\n", fresh));
    }
}
