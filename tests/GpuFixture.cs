using VkPrompt.Runtime;
using Xunit;
using Xunit.Sdk;
using VkPrompt.Cli;
using Xunit.Abstractions;

[assembly: TestCollectionOrderer("VkPrompt.Tests.GpuCollectionsFirst", "VkPrompt.Tests")]

namespace VkPrompt.Tests;

/// <summary>One Vulkan context with validation on, shared by a GPU collection's tests, which run
/// one at a time on the queue (<see cref="GpuCollections"/>). Set VKPROMPT_DEVICE to test another device than auto's pick.</summary>
public sealed class GpuFixture : IDisposable
{
    static readonly bool MatrixUnitsOn = EnvironmentSettings.GpuOptions().MatrixUnits != MatrixUnitsRequest.Off;

    // What users get by default: the matrix units where the device has them, so every test of a
    // product with 16-bit weights covers them there. VKPROMPT_MATRIX_UNITS=0 tests the portable
    // product there instead. One exception: their fragments are fp16 unless
    // VKPROMPT_MATRIX_UNITS_OPERANDS says otherwise, as the suite's bounds for the matrix units
    // are fp16's; bf16 fragments (the default where the device has them) are tested through
    // MatrixUnitsBf16.
    static GpuOptions Options() => EnvironmentSettings.GpuOptions() is var o && o.MatrixUnitsOperands == MatrixUnitsOperandsRequest.Auto
        ? o with { MatrixUnitsOperands = MatrixUnitsOperandsRequest.Fp16 } : o;

    public GpuContext Context { get; } = GpuContext.Create(Options() with { Validation = true, PipelineCacheDirectory = null });

    readonly Lazy<GpuContext?> emulated, allProducts, bf16;
    readonly Lazy<GpuContext> portable;

    public GpuFixture()
    {
        portable = new(() => Context.UsesMatrixUnits
            ? GpuContext.Create(Options() with { Validation = true, PipelineCacheDirectory = null, MatrixUnits = MatrixUnitsRequest.Off })
            : Context);
        emulated = new(() =>
        {
            var caps = Context.Capabilities;
            if (!MatrixUnitsOn || Context.UsesMatrixUnits || !(caps.ShaderFloat16 && caps.StorageBuffer16Bit)) return null;
            return GpuContext.Create(Options() with { Validation = true, PipelineCacheDirectory = null, MatrixUnits = MatrixUnitsRequest.Emulate });
        });
        allProducts = new(() => MatrixUnits is not { } units ? null
            : GpuContext.Create(Options() with
            {
                Validation = true, PipelineCacheDirectory = null, MatrixUnitsAllProducts = true,
                MatrixUnits = units.MatrixUnitsEmulated ? MatrixUnitsRequest.Emulate : EnvironmentSettings.GpuOptions().MatrixUnits,
            }));
        // The device's own bf16 fragments where it multiplies them, else their emulation.
        bf16 = new(() =>
        {
            if (Context.Plan.Bf16Fragments) return Context;
            var caps = Context.Capabilities;
            bool onUnits = Context.MatrixUnits is VkPrompt.Runtime.MatrixUnits.Khr or VkPrompt.Runtime.MatrixUnits.Nv2 && caps.CooperativeMatrixBf16 && Kernel.IsEmbedded(DevicePlan.KhrBf16MatMulShader);
            if (!MatrixUnitsOn || !onUnits && !(caps.ShaderFloat16 && caps.StorageBuffer16Bit)) return null;
            return GpuContext.Create(Options() with
            {
                Validation = true, PipelineCacheDirectory = null, MatrixUnitsOperands = MatrixUnitsOperandsRequest.Bf16,
                MatrixUnits = onUnits ? EnvironmentSettings.GpuOptions().MatrixUnits : MatrixUnitsRequest.Emulate,
            });
        });
    }

    /// <summary>A context whose products with 16-bit weights run the matrix-units kernel:
    /// <see cref="Context"/> where the device's matrix units do, else one that emulates them
    /// (lavapipe in CI), so that kernel is tested everywhere while <see cref="Context"/> keeps
    /// what users get by default; null where neither can be had.</summary>
    public GpuContext? MatrixUnits => Context.UsesMatrixUnits ? Context : emulated.Value;

    /// <summary>Like <see cref="MatrixUnits"/>, with bf16 fragments (<see cref="DevicePlan.MatrixUnitsOperands"/>):
    /// the device's matrix units where they multiply bf16 and this build has their kernels, else
    /// their emulation; null where neither can be had.</summary>
    public GpuContext? MatrixUnitsBf16 => bf16.Value;

    /// <summary>Like <see cref="MatrixUnits"/>, with every product on the matrix-units kernel,
    /// those of two fp32 operands too (<see cref="GpuOptions.MatrixUnitsAllProducts"/>).</summary>
    public GpuContext? MatrixUnitsAllProducts => allProducts.Value;

    /// <summary>A context whose products all run the portable kernels: <see cref="Context"/> where
    /// it uses no matrix units, else one with them off (<see cref="MatrixUnitsRequest.Off"/>), for
    /// tests that hold int8 weights' products to fp32 bounds on a device whose units would
    /// otherwise take them.</summary>
    public GpuContext Portable => portable.Value;

    internal IEnumerable<GpuContext> Contexts =>
        new[] { Context }.Concat(new[] { emulated, allProducts, bf16 }.Where(l => l.IsValueCreated && l.Value is not null).Select(l => l.Value!))
                         .Concat(portable.IsValueCreated ? [portable.Value] : []).Distinct();

    public void Dispose()
    {
        if (bf16.IsValueCreated && bf16.Value != Context) bf16.Value?.Dispose();
        if (allProducts.IsValueCreated) allProducts.Value?.Dispose();
        if (emulated.IsValueCreated) emulated.Value?.Dispose();
        if (portable.IsValueCreated && portable.Value != Context) portable.Value.Dispose();
        Context.Dispose();
    }
}

/// <summary>The GPU tests' collections. Within one, tests run one at a time on its own
/// <see cref="GpuFixture"/>'s devices, so a validation error is charged to the test that raised
/// it; the collections run side by side, each on devices of its own. They are two because
/// lavapipe compiles a pipeline on the thread that creates it, and with a cold shader cache (a
/// fresh CI machine) that is most of the suite's time: one collection left the second core idle.
/// The op tests (tests/Kernels) are one, the rest (models, training, tools) the other: about
/// even halves of that time.</summary>
public static class GpuCollections
{
    public const string Kernels = "gpu-kernels";
    public const string Rest = "gpu";
}

[CollectionDefinition(GpuCollections.Rest)]
public sealed class GpuCollection : ICollectionFixture<GpuFixture>;

[CollectionDefinition(GpuCollections.Kernels)]
public sealed class KernelsGpuCollection : ICollectionFixture<GpuFixture>;

/// <summary>Starts the two GPU collections first, the op tests' then the rest's, and every other
/// collection after them by name. xunit runs as many collections at once as the machine has cores
/// and starts the next as one ends, in this order. Its default order follows IDs hashed from the
/// test assembly's path, so it changed with the checkout's directory. A fresh clone where the op
/// tests' collection (about 750 s cold on a 2-core machine) started 300 s late ran it alone at the
/// end for 200 s, and its main pass took 1072 s. Another clone of the same code, where that
/// collection started first, took 902 s. Started first, the two long chains run side by side and
/// the short collections fill in after them.</summary>
public sealed class GpuCollectionsFirst : ITestCollectionOrderer
{
    public IEnumerable<ITestCollection> OrderTestCollections(IEnumerable<ITestCollection> testCollections) =>
        testCollections.OrderBy(c => c.DisplayName switch { GpuCollections.Kernels => 0, GpuCollections.Rest => 1, _ => 2 })
                       .ThenBy(c => c.DisplayName, StringComparer.Ordinal);
}

/// <summary>Base of every test that touches the GPU: a validation error raised while the test
/// ran fails that test, with the layer's messages in the failure. Its collection is
/// <see cref="GpuCollections.Rest"/> unless the test class names another.</summary>
[Collection(GpuCollections.Rest)]
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

    /// <summary>The context whose products all run the portable kernels (<see cref="GpuFixture.Portable"/>).</summary>
    protected GpuContext PortableCtx => fixture.Portable;

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

    /// <summary>The context whose matrix units multiply bf16 fragments (<see cref="GpuFixture.MatrixUnitsBf16"/>);
    /// skips the test where there is none.</summary>
    protected GpuContext MatrixUnitsBf16Ctx
    {
        get
        {
            var ctx = fixture.MatrixUnitsBf16;
            Skip.If(ctx is null, $"{Ctx.Capabilities.Name} has neither bf16 matrix units this build can use nor the fp16 arithmetic to emulate them");
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
