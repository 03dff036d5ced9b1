using Silk.NET.Vulkan;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// A host application owns the instance and device (with a validation layer and a messenger of
/// its own) and lends them to VkPrompt. The layer reports a device destroyed while any of its
/// objects live, and any use of a destroyed handle, so zero errors over the whole lifetime shows
/// that the context released everything it made and destroyed nothing it was lent.
/// </summary>
public sealed class AdoptTests
{
    /// <summary>Runs <paramref name="body"/> on a context adopting a fresh <see cref="TestHost"/>'s
    /// device (declared as <paramref name="declare"/> makes it from the host's own declaration),
    /// then has the host destroy everything and checks its validation layer reported nothing.</summary>
    static void OnAdoptedDevice(Action<TestHost, GpuContext> body, bool sixteenBit = false, GpuOptions? options = null,
                                Func<TestHost, HostDevice>? declare = null, bool matrixUnits = false)
    {
        var host = new TestHost(sixteenBit, matrixUnits);
        try
        {
            using (var ctx = GpuContext.Adopt(declare?.Invoke(host) ?? host.Declared, options))
                body(host, ctx);
            // The host's device still works after the context is gone.
            Assert.Equal(Result.Success, host.Vk.DeviceWaitIdle(host.Device));
        }
        finally { host.Dispose(); }
        Assert.True(host.Errors.IsEmpty, $"{host.Errors.Count} validation error(s):\n" + string.Join("\n", host.Errors));
    }

    [Fact]
    public void RunsKernelsOnHostDeviceAndReleasesOnlyWhatItCreated()
    {
        const int n = 1000;
        var x = Check.Random(n, 1);
        var y = Check.Random(n, 2);
        float[] result = [];
        OnAdoptedDevice((_, ctx) =>
        {
            using var gx = GpuBuffer.From<float>(ctx, x);
            using var gy = GpuBuffer.From<float>(ctx, y);
            using (var g = new CommandGraph(ctx))
            {
                AddKernel.Forward(g, gx, gy, n, 2f);
                g.Run();
            }
            result = gx.Download<float>();
        });
        AddReference.Forward(x, y, 2f);
        Check.Close(x, result, 1e-6, "add on an adopted device");
    }

    public static TheoryData<string, string, string> Cases() =>
        GoldenCase.Cases(TestPaths.Golden, Directory.GetDirectories(TestPaths.Golden).Order().Select(Path.GetFileName)!, ["adopted"]);

    /// <summary>The numerical contract on a device the host made: every golden case's scores,
    /// gradient and K Adafactor steps, as GoldenTests checks them on a created device.</summary>
    [Theory, MemberData(nameof(Cases))]
    public void GoldenCasesPassOnAnAdoptedDevice(string model, string caseName, string backend)
    {
        Assert.Equal("adopted", backend);
        OnAdoptedDevice((_, ctx) =>
        {
            Assert.True(ctx.Plan.Adopted);
            GoldenCase.Run(TestPaths.Golden, model, caseName, new GpuBackend(ctx), (g, weights) =>
            {
                g.AssertScores(weights);
                g.AssertGradientAndLoss(weights);
                g.AssertAdafactorSteps(weights);
            });
        });
    }

    // ---- the declared contract ----

    static GpuException Refused(Func<TestHost, HostDevice> declare)
    {
        using var host = new TestHost();
        var e = Assert.Throws<GpuException>(() => GpuContext.Adopt(declare(host)).Dispose());
        Assert.True(host.Errors.IsEmpty, string.Join("\n", host.Errors));
        return e;
    }

    [Fact]
    public void RefusesADeviceWithoutTimelineSemaphores()
    {
        var e = Refused(h => h.Declared with { EnabledFeatures = h.Enabled with { TimelineSemaphore = false } });
        Assert.Contains("timelineSemaphore", e.Message);
        Assert.Contains("HostFeatures.TimelineSemaphore", e.Message);
    }

    [Fact]
    public void RefusesVulkan11() =>
        Assert.Contains("Vulkan 1.2 or later (HostDevice.ApiVersion is 1.1.0)", Refused(h => h.Declared with { ApiVersion = Vk.Version11 }).Message);

    [Fact]
    public void RefusesAQueueThatIsNotThere()
    {
        Assert.Contains("HostDevice.QueueFamily is 99", Refused(h => h.Declared with { QueueFamily = 99 }).Message);
        Assert.Contains("HostDevice.QueueIndex is 7", Refused(h => h.Declared with { QueueIndex = 7 }).Message);
    }

    static HostDevice Declaration(uint apiVersion = 0, bool timeline = true) => new()
    {
        Instance = default, PhysicalDevice = default, Device = default,
        ApiVersion = apiVersion == 0 ? Vk.Version12 : apiVersion, QueueFamily = 1,
        EnabledFeatures = new HostFeatures { TimelineSemaphore = timeline },
    };

    static readonly QueueFamilyProperties Graphics = new(QueueFlags.GraphicsBit | QueueFlags.TransferBit, 1);
    static readonly QueueFamilyProperties Compute = new(QueueFlags.ComputeBit, 2);

    /// <summary>lavapipe has one family, with compute, so the family check is fed facts: a
    /// family of graphics and transfer only is refused, naming it; one with compute passes.</summary>
    [Fact]
    public void RefusesAFamilyWithoutCompute()
    {
        var e = Assert.Throws<GpuException>(() => Declaration().Check(Vk.Version13, [Compute, Graphics]));
        Assert.Contains("compute on the queue's family (HostDevice.QueueFamily 1 has GraphicsBit, TransferBit)", e.Message);
        Declaration().Check(Vk.Version13, [Graphics, Compute]);
    }

    [Fact]
    public void NamesEverythingMissingAtOnce()
    {
        var e = Assert.Throws<GpuException>(() => (Declaration(Vk.Version11, timeline: false) with { QueueIndex = 2 }).Check(Vk.Version11, [Graphics, Compute]));
        Assert.Contains("HostDevice.ApiVersion is 1.1.0", e.Message);
        Assert.Contains("the physical device supports 1.1.0", e.Message);
        Assert.Contains("HostDevice.QueueIndex is 2; family 1 has 2", e.Message);
        Assert.Contains("timelineSemaphore", e.Message);
        Assert.DoesNotContain("compute on", e.Message);
    }

    /// <summary>16-bit weights need the storageBuffer16BitAccess the host enabled, not the one the
    /// device has (lavapipe has it): refused naming it where the host did not enable it, while
    /// fp32 weights run; accepted where it did.</summary>
    [Fact]
    public void HalfWeightsNeedTheHostsSixteenBitStorage()
    {
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        OnAdoptedDevice((_, ctx) =>
        {
            Assert.False(ctx.Capabilities.StorageBuffer16Bit);
            using var backend = new GpuBackend(ctx);
            var e = Assert.Throws<GpuException>(() => new T5Weights(g.Ckpt, backend, WeightPrecision.Bf16).Dispose());
            Assert.Contains("storageBuffer16BitAccess", e.Message);
            Assert.Contains("as its host enabled it", e.Message);
            using var weights = new T5Weights(g.Ckpt, backend, WeightPrecision.Fp32);
            g.AssertScores(weights);
        });
        OnAdoptedDevice((_, ctx) =>
        {
            Assert.True(ctx.Capabilities.StorageBuffer16Bit);
            using var backend = new GpuBackend(ctx);
            using var weights = new T5Weights(g.Ckpt, backend, WeightPrecision.Bf16);
            using var scorer = new Scorer(weights);
            // GoldenTests.HalfWeightsStayNearGolden's tolerance for bf16 weights.
            GoldenCase.AssertLogLikelihoods(g.ScoresWithoutPrompt, scorer.Score(g.Examples, null), "bf16 without prompt", Math.Pow(2, -8) / 2);
        }, sixteenBit: true);
    }

    /// <summary>The matrix units run on an adopted device where its host enabled what they need,
    /// and are used there: lavapipe has none, so the emulated kernel (shaderFloat16 and 16-bit
    /// storage) stands in for them.</summary>
    [Fact]
    public void MatrixUnitsRunWhereTheHostEnabledThem()
    {
        var emulate = new GpuOptions { MatrixUnits = MatrixUnitsRequest.Emulate };
        using (var host = new TestHost())
        {
            var e = Assert.Throws<GpuException>(() => GpuContext.Adopt(host.Declared, emulate).Dispose());
            Assert.Contains("shaderFloat16", e.Message);
        }
        OnAdoptedDevice((_, ctx) =>
        {
            Assert.Equal(MatrixUnits.Emulated, ctx.Plan.MatrixUnits);
            Assert.True(ctx.UsesMatrixUnits);
            Assert.Equal(WeightPrecision.Fp16, ctx.Plan.StoredPrecision(WeightPrecision.Bf16));
            Assert.Equal("emulated", (string?)ctx.Plan.ToJson()["matrixUnits"]);
            Assert.True((bool?)ctx.Plan.ToJson()["adopted"]);
            using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
            using var backend = new GpuBackend(ctx);
            using var weights = new T5Weights(g.Ckpt, backend, WeightPrecision.Bf16);
            using (var scorer = new Scorer(weights))
                GoldenCase.AssertLogLikelihoods(g.ScoresWithoutPrompt, scorer.Score(g.Examples, null), "bf16 on the emulated matrix units", Math.Pow(2, -8) / 2);
            Assert.Contains(ctx.Kernels, k => k.Name.StartsWith("matmul_coopmat_emulated", StringComparison.Ordinal));
        }, sixteenBit: true, options: emulate);
    }

    /// <summary>A host that enables the KHR matrix units (where the device has them) gets the
    /// plan a created device gets, and its products with 16-bit weights run on them; on lavapipe,
    /// which has none, both plans run none.</summary>
    [SkippableFact]
    public void AHostThatEnablesTheMatrixUnitsGetsThemUsed()
    {
        var created = DevicePlan.For(GpuContext.ListDevices()[TestHost.ChosenIndex], new GpuOptions());
        Skip.IfNot(created.MatrixUnits is MatrixUnits.None or MatrixUnits.Khr, $"the device's matrix units are {created.MatrixUnits}, which TestHost does not enable");
        OnAdoptedDevice((_, ctx) =>
        {
            Assert.Equal(created.MatrixUnits, ctx.Plan.MatrixUnits);
            Assert.Equal(created.StoredPrecision(WeightPrecision.Bf16), ctx.Plan.StoredPrecision(WeightPrecision.Bf16));
            if (!ctx.UsesMatrixUnits) return;
            using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
            using var backend = new GpuBackend(ctx);
            using var weights = new T5Weights(g.Ckpt, backend, WeightPrecision.Bf16);
            using (var scorer = new Scorer(weights))
                GoldenCase.AssertLogLikelihoods(g.ScoresWithoutPrompt, scorer.Score(g.Examples, null), "bf16 on the matrix units", Math.Pow(2, -8) / 2);
            Assert.Contains(ctx.Kernels, k => k.Name.StartsWith("matmul_coopmat_khr", StringComparison.Ordinal));
        }, matrixUnits: true);
    }

    // ---- the host's pipeline cache ----

    /// <summary>The host lends its VkPipelineCache: the context's pipelines are created through
    /// it, as the host's own vkGetInstanceProcAddr sees them (<see cref="PipelineSpy"/>: lavapipe
    /// keeps nothing in a VkPipelineCache, whose data stays a 32-byte header, so its growth cannot
    /// show it), and the context destroys nothing it was lent: the host still reads the cache
    /// after the context is gone, then destroys it itself, with no validation error.</summary>
    [Fact]
    public unsafe void PipelinesGoThroughTheHostsCache()
    {
        var host = new TestHost();
        try
        {
            var info = new PipelineCacheCreateInfo { SType = StructureType.PipelineCacheCreateInfo };
            Assert.Equal(Result.Success, host.Vk.CreatePipelineCache(host.Device, &info, null, out var cache));
            nuint before = CacheBytes(host, cache);
            var caches = PipelineSpy.Watch(host.Declared.GetInstanceProcAddr);
            using (var ctx = GpuContext.Adopt(host.Declared with { PipelineCache = cache, GetInstanceProcAddr = PipelineSpy.GetInstanceProcAddr }))
                Kernel(ctx);
            Assert.Equal([cache.Handle], caches.Distinct());
            Assert.True(CacheBytes(host, cache) >= before);
            host.Vk.DestroyPipelineCache(host.Device, cache, null);
        }
        finally { host.Dispose(); }
        Assert.True(host.Errors.IsEmpty, $"{host.Errors.Count} validation error(s):\n" + string.Join("\n", host.Errors));
    }

    /// <summary>A host's vkGetInstanceProcAddr that hands out its own vkCreateComputePipelines,
    /// which records the pipeline cache of each call and forwards it: what a host with its own
    /// layer would see. One test at a time uses it (static state: the entry points are C functions).</summary>
    static unsafe class PipelineSpy
    {
        static nint real, realCreate;
        static List<ulong> caches = [];

        public static nint GetInstanceProcAddr => (nint)(delegate* unmanaged[Cdecl]<Instance, byte*, nint>)&Gipa;

        /// <summary>Forwards to <paramref name="gipa"/>; returns the list the caches go in.</summary>
        public static List<ulong> Watch(nint gipa)
        {
            real = gipa;
            return caches = [];
        }

        [System.Runtime.InteropServices.UnmanagedCallersOnly(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
        static nint Gipa(Instance instance, byte* name)
        {
            nint f = ((delegate* unmanaged[Cdecl]<Instance, byte*, nint>)real)(instance, name);
            if (f == 0 || System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)name) != "vkCreateComputePipelines") return f;
            realCreate = f;
            return (nint)(delegate* unmanaged[Cdecl]<Device, PipelineCache, uint, ComputePipelineCreateInfo*, AllocationCallbacks*, Pipeline*, Result>)&Create;
        }

        [System.Runtime.InteropServices.UnmanagedCallersOnly(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
        static Result Create(Device device, PipelineCache cache, uint count, ComputePipelineCreateInfo* infos, AllocationCallbacks* allocator, Pipeline* pipelines)
        {
            lock (caches) caches.Add(cache.Handle);
            return ((delegate* unmanaged[Cdecl]<Device, PipelineCache, uint, ComputePipelineCreateInfo*, AllocationCallbacks*, Pipeline*, Result>)realCreate)(
                device, cache, count, infos, allocator, pipelines);
        }
    }

    static void Kernel(GpuContext ctx)
    {
        using var gx = GpuBuffer.From<float>(ctx, Check.Random(8, 1));
        using var g = new CommandGraph(ctx);
        AddKernel.Forward(g, gx, gx, 8, 1f);
        g.Run();
    }

    static unsafe nuint CacheBytes(TestHost host, PipelineCache cache)
    {
        nuint size = 0;
        Assert.Equal(Result.Success, host.Vk.GetPipelineCacheData(host.Device, cache, &size, null));
        return size;
    }

    [Fact]
    public void RefusesTheHostsCacheBesideACacheDirectory()
    {
        using var host = new TestHost();
        var e = Assert.Throws<GpuException>(() =>
            GpuContext.Adopt(host.Declared with { PipelineCache = new PipelineCache(1) }, new GpuOptions { PipelineCacheDirectory = "/tmp/x" }).Dispose());
        Assert.Contains("HostDevice.PipelineCache", e.Message);
        Assert.Contains("PipelineCacheDirectory", e.Message);
    }
}
