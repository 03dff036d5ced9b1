using System.Text.Json;
using System.Text.Json.Nodes;
using VkPrompt.Cli;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Tests.Cli;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>The device plan (<see cref="DevicePlan"/>): every per-device choice, printed by
/// <c>vkprompt devices --json</c>, for lavapipe, for emulated matrix units and for the H100 of
/// docs/results; and one option changed changes exactly its one choice.</summary>
public sealed class DevicePlanTests
{
    const string H100File = "docs/results/h100-2026-11-26c/devices.json";

    /// <summary>The H100 as recorded on 2026-11-26 (what <c>vkprompt devices --json</c> printed there).</summary>
    public static DeviceCapabilities H100 { get; } =
        Assert.Single(JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, H100File)), CliJson.Default.IReadOnlyListDeviceCapabilities)!);

    static DeviceCapabilities? Lavapipe() => GpuContext.ListDevices().FirstOrDefault(d => d.DriverName == "llvmpipe");

    static readonly bool KhrBuilt = Kernel.IsEmbedded(DevicePlan.KhrMatMulShader);

    /// <summary>The recorded capabilities read back as they were written: every field the file
    /// holds survives a round trip.</summary>
    [Fact]
    public void RecordedCapabilitiesRoundTrip()
    {
        var written = JsonSerializer.Serialize(H100, CliJson.Default.DeviceCapabilities);
        var again = JsonSerializer.Deserialize(written, CliJson.Default.DeviceCapabilities)!;
        Assert.Equal(written, JsonSerializer.Serialize(again, CliJson.Default.DeviceCapabilities));
        var recorded = JsonNode.Parse(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, H100File)))![0]!.AsObject();
        var read = JsonNode.Parse(written)!.AsObject();
        foreach (var (field, value) in recorded)
            Assert.True(JsonNode.DeepEquals(value, read[field]), $"{field}: {value?.ToJsonString()} read back as {read[field]?.ToJsonString()}");
    }

    /// <summary>The H100's plan, as <c>vkprompt devices --json --capabilities</c> prints it from
    /// docs/results: the matrix units through KHR (NV where this build lacks the KHR kernel),
    /// StagedDeep for large portable products, bf16 weights stored as fp16, attention fused
    /// from 1024² scores a head, rows of 256 invocations.</summary>
    [Fact]
    public void H100PlanFromRecordedCapabilities()
    {
        var r = CliRun.Of("devices", "--json", "--capabilities", Path.Combine(TestPaths.RepoRoot, H100File)).Succeeded();
        var device = Assert.Single(JsonNode.Parse(r.Out)!.AsArray())!;
        Assert.Equal("NVIDIA H100 80GB HBM3", (string?)device["name"]);
        var plan = device["plan"]!;
        Assert.Equal(KhrBuilt ? "khr" : "nv", (string?)plan["matrixUnits"]);
        Assert.Equal(KhrBuilt ? "matmul_coopmat_khr" : "matmul_coopmat", (string?)plan["matrixUnitsProduct"]!["kernel"]);
        Assert.Equal("by-shape", (string?)plan["portableProduct"]!["rule"]);
        Assert.Equal("StagedDeep", (string?)plan["portableProduct"]!["tilings"]!["otherwise"]!["name"]);
        Assert.Equal("StagedSmall", (string?)plan["portableProduct"]!["tilings"]!["rows <= 64"]!["name"]);
        Assert.Equal(MatrixUnitsTiling.Default.Text, (string?)plan["matrixUnitsProduct"]!["tilings"]!["otherwise"]);
        Assert.Equal("fp16", (string?)plan["storedWeights"]!["bf16"]);
        Assert.Equal(1024 * 1024, (long)plan["attention"]!["fusedByDefaultFromScoresPerHead"]!);
        Assert.Equal(256, (int)plan["rowKernels"]!["localSize"]!);
        Assert.Equal(256, (int)plan["halfCopies"]!["minOtherDimension"]!);
        Assert.False((bool)plan["tunesProducts"]!);
        // The same plan the library computes.
        Assert.True(JsonNode.DeepEquals(DevicePlan.For(H100, EnvironmentSettings.GpuOptions()).ToJson(), plan));
    }

    /// <summary>lavapipe's plan, as <c>vkprompt devices --json</c> prints it on this machine:
    /// the streamed product, no matrix units, weights stored as asked, attention never fused by
    /// size, no tuning even where asked (one tiling to run).</summary>
    [SkippableFact]
    public void LavapipePlan()
    {
        var lavapipe = Lavapipe();
        Skip.If(lavapipe is null, "lavapipe is not visible to the loader here");
        var plan = DevicePlan.For(lavapipe, new GpuOptions { TuneMatMul = true });
        Assert.Equal(MatrixUnits.None, plan.MatrixUnits);
        Assert.Equal("streamed", plan.PortableRule);
        Assert.Equal(MatMulTiling.Streamed, plan.PortableTiling(MatMulSpec.Rows(4096, 4096, 4096, transposeB: true), WeightPrecision.Fp32));
        Assert.Equal(WeightPrecision.Bf16, plan.StoredPrecision(WeightPrecision.Bf16));
        Assert.False(plan.TunesProducts);
        Assert.False(plan.FusesAttentionByDefault(new AttentionShape(1, 1, 2048, 2048)));
        // Past one binding (128 MiB on lavapipe) only the fused attention runs.
        Assert.True(plan.FusesAttentionByDefault(new AttentionShape(1, 1, 8192, 8192)));

        var r = CliRun.Of("devices", "--json").Succeeded();
        var printed = JsonNode.Parse(r.Out)!.AsArray().Single(d => (string?)d!["driverName"] == "llvmpipe")!["plan"]!;
        Assert.Equal("streamed", (string?)printed["portableProduct"]!["rule"]);
        Assert.Equal("Streamed", (string?)printed["portableProduct"]!["tilings"]!["all"]!["name"]);
        Assert.Null(printed["matrixUnitsProduct"]);
        Assert.Null(printed["attention"]!["fusedByDefaultFromScoresPerHead"]);
    }

    /// <summary>Emulated matrix units on lavapipe: the emulated kernel, built for subgroups of 32
    /// whatever the device's, bf16 weights stored as the fp16 it multiplies.</summary>
    [SkippableFact]
    public void EmulatedMatrixUnitsPlan()
    {
        var lavapipe = Lavapipe();
        Skip.If(lavapipe is null || !(lavapipe.ShaderFloat16 && lavapipe.StorageBuffer16Bit), "no lavapipe with fp16 arithmetic here");
        var plan = DevicePlan.For(lavapipe, new GpuOptions { MatrixUnits = MatrixUnitsRequest.Emulate });
        var json = plan.ToJson();
        Assert.Equal("emulated", (string?)json["matrixUnits"]);
        Assert.Equal(32u, plan.MatrixUnitsSubgroupSize);
        Assert.Equal(32u, (uint)json["matrixUnitsSubgroupSize"]!);
        Assert.Equal("matmul_coopmat_emulated", (string?)json["matrixUnitsProduct"]!["kernel"]);
        Assert.Equal("fp16", (string?)json["storedWeights"]!["bf16"]);
        Assert.True(plan.OnMatrixUnits(WeightPrecision.Bf16));
        Assert.False(plan.OnMatrixUnits(WeightPrecision.Fp32));
        // The portable product still streams on a CPU device.
        Assert.Equal("streamed", (string?)json["portableProduct"]!["rule"]);
    }

    /// <summary>The fragments' type (<see cref="DevicePlan.MatrixUnitsOperands"/>) on the H100 as
    /// recorded, which lists 16x16x16 bf16·bf16+fp32 (the bf16 component type spelled by its
    /// number then) and VK_KHR_shader_bfloat16, but predates the report of that extension's
    /// features, taken here as the shape says (NVIDIA's drivers list the shape only with them):
    /// bf16 by default where the bf16 kernels are built (bf16 weights then stay bf16, no fp16
    /// copies, the device created with the extension), fp16 where forced, where not built, or
    /// where the features are not known; asked for where it cannot be had, an error that says why.</summary>
    [Fact]
    public void Bf16FragmentsPlan()
    {
        Assert.True(H100.BFloat16);
        Assert.Contains("16x16x16 type1000141000·type1000141000+f32→f32", H100.CooperativeMatrixShapes);
        var h100 = H100 with { CooperativeMatrixBf16 = true };
        DevicePlan Plan(DeviceCapabilities caps, GpuOptions options, bool bf16Built = true) => new(caps, options, khrBuilt: true, nv2Built: false, bf16Built);

        var plan = Plan(h100, new GpuOptions());
        Assert.Equal(ActivationPrecision.Bf16, plan.Activations);
        Assert.Equal(MatrixUnitsOperands.Bf16, plan.MatrixUnitsOperands);
        var json = plan.ToJson();
        Assert.Equal("bf16", (string?)json["matrixUnitsOperands"]);
        Assert.Equal("matmul_coopmat_khr_bf16", (string?)json["matrixUnitsProduct"]!["kernel"]);
        Assert.Equal("bf16", (string?)json["storedWeights"]!["bf16"]);
        Assert.Null(json["halfCopies"]);
        var wide = MatMulSpec.Rows(19584, 768, 768, transposeB: true);
        Assert.Equal((false, false), MatMulKernel.CopiedOperands(plan, wide, WeightPrecision.Fp32, halfA: true, halfB: true));
        Assert.Contains(DeviceCapabilities.ShaderBfloat16Extension, DeviceBringUp.DeviceExtensionNames(plan));

        // Forced fp16: the plan as before bf16 fragments.
        var fp16 = Plan(h100, new GpuOptions { MatrixUnitsOperands = MatrixUnitsOperandsRequest.Fp16 });
        Assert.Equal(MatrixUnitsOperands.Fp16, fp16.MatrixUnitsOperands);
        Assert.Equal("matmul_coopmat_khr", (string?)fp16.ToJson()["matrixUnitsProduct"]!["kernel"]);
        Assert.Equal(WeightPrecision.Fp16, fp16.StoredPrecision(WeightPrecision.Bf16));
        Assert.True(fp16.HalvesA(wide));
        Assert.DoesNotContain(DeviceCapabilities.ShaderBfloat16Extension, DeviceBringUp.DeviceExtensionNames(fp16));

        // Not built, or the features not known: fp16 unasked, an error asked.
        Assert.Equal(MatrixUnitsOperands.Fp16, Plan(h100, new GpuOptions(), bf16Built: false).MatrixUnitsOperands);
        Assert.Equal(MatrixUnitsOperands.Fp16, Plan(H100, new GpuOptions()).MatrixUnitsOperands);
        var bf16 = new GpuOptions { MatrixUnitsOperands = MatrixUnitsOperandsRequest.Bf16 };
        Assert.Contains("GL_EXT_bfloat16", Assert.Throws<GpuException>(() => Plan(h100, bf16, bf16Built: false)).Message);
        Assert.Contains("lacks", Assert.Throws<GpuException>(() => Plan(H100, bf16)).Message);
        Assert.Contains("nv", Assert.Throws<GpuException>(() => Plan(h100, bf16 with { MatrixUnits = MatrixUnitsRequest.Nv })).Message);
        // CPU-side activations (fp32 by default there): fp16 unasked.
        Assert.Equal(MatrixUnitsOperands.Fp16, Plan(h100 with { DeviceType = "cpu" }, new GpuOptions()).MatrixUnitsOperands);
        // The run's activations decide where it gives them (GpuOptions.Activations, --activations):
        // fp32 ones multiply fp16 fragments, with the fp16 copies such a plan makes, bf16 ones bf16
        // fragments; and the plan reports the activations asked for, on any device.
        var fp32 = Plan(h100, new GpuOptions { Activations = ActivationPrecision.Fp32 });
        Assert.Equal(ActivationPrecision.Fp32, fp32.Activations);
        Assert.Equal(MatrixUnitsOperands.Fp16, fp32.MatrixUnitsOperands);
        Assert.True(fp32.HalvesA(wide));
        Assert.Equal(MatrixUnitsOperands.Bf16, Plan(h100, new GpuOptions { Activations = ActivationPrecision.Bf16 }).MatrixUnitsOperands);
        Assert.Equal(ActivationPrecision.Bf16, Plan(h100 with { DeviceType = "cpu" }, new GpuOptions { Activations = ActivationPrecision.Bf16 }).Activations);
    }

    /// <summary>The matrix units' kernels are pinned to the device's subgroup size where it can
    /// pin one (the H100 as recorded predates that report, so it is taken as NVIDIA's drivers list
    /// it), never the emulation's; the device is then created with the extension.</summary>
    [SkippableFact]
    public void MatrixUnitsSubgroupPinnedWhereTheDeviceCan()
    {
        DevicePlan Plan(DeviceCapabilities caps, GpuOptions options) => new(caps, options, khrBuilt: true, nv2Built: true);
        var pinning = H100 with { SubgroupSizeControl = true };
        var plan = Plan(pinning, new GpuOptions());
        Assert.Equal(MatrixUnits.Khr, plan.MatrixUnits);
        Assert.True(plan.MatrixUnitsSubgroupPinned);
        Assert.True((bool?)plan.ToJson()["matrixUnitsSubgroupPinned"]);
        Assert.Contains(DeviceCapabilities.SubgroupSizeControlExtension, DeviceBringUp.DeviceExtensionNames(plan));
        Assert.True(Plan(pinning, new GpuOptions { MatrixUnits = MatrixUnitsRequest.Nv }).MatrixUnitsSubgroupPinned);
        Assert.False(Plan(H100, new GpuOptions()).MatrixUnitsSubgroupPinned);
        Assert.False(Plan(pinning, new GpuOptions { MatrixUnitsPinSubgroups = false }).MatrixUnitsSubgroupPinned);
        Assert.Null(Plan(pinning, new GpuOptions { MatrixUnits = MatrixUnitsRequest.Off }).ToJson()["matrixUnitsSubgroupPinned"]);

        var lavapipe = Lavapipe();
        Skip.If(lavapipe is null || !(lavapipe.ShaderFloat16 && lavapipe.StorageBuffer16Bit), "no lavapipe with fp16 arithmetic here");
        var emulated = DevicePlan.For(lavapipe, new GpuOptions { MatrixUnits = MatrixUnitsRequest.Emulate });
        Assert.False(emulated.MatrixUnitsSubgroupPinned);
        Assert.False((bool?)emulated.ToJson()["matrixUnitsSubgroupPinned"]);
    }

    /// <summary>The fused attention on the emulated units is specialised for the width asked for
    /// (32 unless set), which the plan prints where that attention runs on the units, the emulated
    /// product keeping 32; on the device's own units both take the device's subgroups whatever is
    /// asked; a width the kernels do not take is refused, naming the option.</summary>
    [Fact]
    public void EmulatedAttentionRunsTheSubgroupWidthAskedFor()
    {
        DevicePlan Plan(DeviceCapabilities caps, GpuOptions options) => new(caps, options, khrBuilt: true, nv2Built: true);
        var emulate = new GpuOptions { MatrixUnits = MatrixUnitsRequest.Emulate, MatrixUnitsAllProducts = true };
        Assert.Equal(32u, Plan(H100, emulate).FusedAttentionSubgroupSize);
        var narrow = Plan(H100, emulate with { EmulatedAttentionSubgroupSize = 8 });
        Assert.Equal(8u, narrow.FusedAttentionSubgroupSize);
        Assert.Equal(32u, narrow.MatrixUnitsSubgroupSize);
        Assert.Equal(8u, (uint?)narrow.ToJson()["attention"]!["matrixUnitsSubgroupSize"]);
        var own = Plan(H100, new GpuOptions { MatrixUnitsAllProducts = true, EmulatedAttentionSubgroupSize = 8 });
        Assert.Equal(MatrixUnits.Khr, own.MatrixUnits);
        Assert.Equal(H100.SubgroupSize, own.FusedAttentionSubgroupSize);
        // Printed as null, not left out, where the attention is not on the units.
        var attention = Plan(H100, new GpuOptions()).ToJson()["attention"]!.AsObject();
        Assert.True(attention.TryGetPropertyValue("matrixUnitsSubgroupSize", out var none) && none is null);
        var e = Assert.Throws<GpuException>(() => Plan(H100, emulate with { EmulatedAttentionSubgroupSize = 12 }));
        Assert.Contains("GpuOptions.EmulatedAttentionSubgroupSize=12", e.Message);
    }

    /// <summary>Emulated matrix units multiply fp16 fragments unless asked for bf16 ones, which
    /// then run matmul_coopmat_emulated_bf16 on the device as it is (no extension).</summary>
    [SkippableFact]
    public void EmulatedBf16FragmentsPlan()
    {
        var lavapipe = Lavapipe();
        Skip.If(lavapipe is null || !(lavapipe.ShaderFloat16 && lavapipe.StorageBuffer16Bit), "no lavapipe with fp16 arithmetic here");
        var emulate = new GpuOptions { MatrixUnits = MatrixUnitsRequest.Emulate };
        Assert.Equal("fp16", (string?)DevicePlan.For(lavapipe, emulate).ToJson()["matrixUnitsOperands"]);
        var plan = DevicePlan.For(lavapipe, emulate with { MatrixUnitsOperands = MatrixUnitsOperandsRequest.Bf16 });
        var json = plan.ToJson();
        Assert.Equal("bf16", (string?)json["matrixUnitsOperands"]);
        Assert.Equal("matmul_coopmat_emulated_bf16", (string?)json["matrixUnitsProduct"]!["kernel"]);
        Assert.Equal("bf16", (string?)json["storedWeights"]!["bf16"]);
        Assert.DoesNotContain(DeviceCapabilities.ShaderBfloat16Extension, DeviceBringUp.DeviceExtensionNames(plan));
        // Without matrix units there are no fragments to ask for.
        Assert.Throws<GpuException>(() => DevicePlan.For(lavapipe, new GpuOptions { MatrixUnitsOperands = MatrixUnitsOperandsRequest.Bf16 }));
    }

    /// <summary>One option changed changes exactly the one choice it decides in the plan's JSON
    /// (as dotted paths to its leaves: a value, or "null"; a choice that goes away loses its leaves).</summary>
    [Theory]
    [InlineData("fp16 weights off", "storedWeights.bf16", "fp16", "bf16")]
    [InlineData("forced portable tiling", "portableProduct.forcedTiling", "null", "16x16x4x4x16")]
    [InlineData("tuner on", "tunesProducts", "false", "true")]
    [InlineData("row local size", "rowKernels.localSize", "256", "128")]
    [InlineData("attention on the matrix units", "matrixUnitsAllProducts", "false", "true", "attention.fusedOnMatrixUnits,attention.matrixUnitsSubgroupSize")]
    [InlineData("half copies off", "halfCopies.minOtherDimension", "256", null, "halfCopies")]
    [InlineData("memory cap", "memory.capBytes", "null", "1048576")]
    public void OneOptionChangesOneChoice(string change, string path, string? before, string? after, string? alsoPath = null)
    {
        var defaults = new GpuOptions();
        var changed = change switch
        {
            "fp16 weights off" => defaults with { MatrixUnitsFp16Weights = false },
            "forced portable tiling" => defaults with { MatMulTiling = "16x16x4x4x16" },
            "tuner on" => defaults with { TuneMatMul = true },
            "row local size" => defaults with { RowLocalSize = 128 },
            "attention on the matrix units" => defaults with { MatrixUnitsAllProducts = true },
            "half copies off" => defaults with { MatrixUnitsHalfActivations = false },
            "memory cap" => defaults with { MemoryCapBytes = 1 << 20 },
            _ => throw new ArgumentException(change),
        };
        var a = Leaves(DevicePlan.For(H100, defaults).ToJson());
        var b = Leaves(DevicePlan.For(H100, changed).ToJson());
        var differing = a.Keys.Union(b.Keys).Where(k => a.GetValueOrDefault(k) != b.GetValueOrDefault(k)).Order().ToList();
        Assert.Equal(new[] { path }.Concat(alsoPath?.Split(',') ?? []).Order(), differing);
        Assert.Equal(before, a.GetValueOrDefault(path));
        Assert.Equal(after, b.GetValueOrDefault(path));
    }

    /// <summary>--activations auto: bf16 on a GPU with 16-bit storage (the H100), fp32 on one
    /// without it and on CPU devices (lavapipe has 16-bit storage, but its plan keeps fp32), and
    /// the plan prints the choice.</summary>
    [Fact]
    public void ActivationsAreBf16OnGpusWithSixteenBitStorage()
    {
        var options = new GpuOptions();
        var h100 = DevicePlan.For(H100, options);
        Assert.Equal(ActivationPrecision.Bf16, h100.Activations);
        Assert.Equal("bf16", Leaves(h100.ToJson())["activations"]);
        Assert.Equal(ActivationPrecision.Fp32, DevicePlan.For(H100 with { StorageBuffer16Bit = false }, options).Activations);
        Assert.Equal(ActivationPrecision.Fp32, DevicePlan.For(H100 with { DeviceType = "cpu" }, options).Activations);
        Assert.Equal(ActivationPrecision.Bf16, DevicePlan.For(H100 with { DeviceType = "cpu" }, options with { PlanForGpu = true }).Activations);
        Assert.Equal(ActivationPrecision.Fp32, ActivationPrecisions.Resolve([ActivationPrecision.Bf16, ActivationPrecision.Fp32]));
        Assert.Equal(ActivationPrecision.Bf16, ActivationPrecisions.Resolve([ActivationPrecision.Bf16, ActivationPrecision.Bf16]));
    }

    /// <summary>The pool keeps within the heaps' budgets where the device has VK_EXT_memory_budget
    /// and it is enabled: always on a device the context creates (which enables it), on a lent
    /// device only where the host says it enabled it; the plan prints the margin then. A cap that
    /// is not positive, or a margin outside [0, 1), is refused naming the option.</summary>
    [Fact]
    public void HeapBudgetsWhereTheExtensionIsThereAndEnabled()
    {
        var withBudget = H100 with { MemoryBudget = true };
        var options = new GpuOptions();
        Assert.True(DevicePlan.For(withBudget, options).MemoryBudget);
        Assert.False(DevicePlan.For(H100 with { MemoryBudget = false }, options).MemoryBudget);
        HostDevice Lent(params string[] extensions) => new()
        {
            Instance = default, PhysicalDevice = default, Device = default, ApiVersion = Silk.NET.Vulkan.Vk.Version12, QueueFamily = 0,
            EnabledFeatures = new HostFeatures { TimelineSemaphore = true }, EnabledExtensions = extensions,
        };
        Assert.False(DevicePlan.ForAdopted(Lent(), withBudget, options).MemoryBudget);
        Assert.True(DevicePlan.ForAdopted(Lent("VK_EXT_memory_budget"), withBudget, options).MemoryBudget);
        Assert.False(DevicePlan.ForAdopted(Lent("VK_EXT_memory_budget"), H100 with { MemoryBudget = false }, options).MemoryBudget);

        var json = Leaves(DevicePlan.For(withBudget, options with { MemoryBudgetMargin = 0.25 }).ToJson());
        Assert.Equal(("true", "0.25"), (json["memory.heapBudgets"], json["memory.budgetMargin"]));
        Assert.Equal("null", Leaves(DevicePlan.For(H100 with { MemoryBudget = false }, options).ToJson())["memory.budgetMargin"]);

        var cap = Assert.Throws<GpuException>(() => DevicePlan.For(H100, options with { MemoryCapBytes = 0 }));
        Assert.Equal("GpuOptions.MemoryCapBytes=0: a memory cap must be a positive number of bytes", cap.Message);
        var margin = Assert.Throws<GpuException>(() => DevicePlan.For(withBudget, options with { MemoryBudgetMargin = 1 }));
        Assert.StartsWith("GpuOptions.MemoryBudgetMargin=1: ", margin.Message, StringComparison.Ordinal);
    }

    /// <summary><see cref="GpuOptions.PlanForGpu"/> gives a CPU device the GPU's plan: the H100's
    /// capabilities relabelled a CPU plan as lavapipe does (streamed products, no fusion by size,
    /// no tuning) and, with the option, exactly as the H100 does, but for the slice fill.</summary>
    [Fact]
    public void PlanForGpuGivesACpuTheGpusPlan()
    {
        var cpu = H100 with { DeviceType = "cpu" };
        var tuned = new GpuOptions { TuneMatMul = true };
        var asCpu = Leaves(DevicePlan.For(cpu, tuned).ToJson());
        Assert.Equal("streamed", asCpu["portableProduct.rule"]);
        Assert.Equal("null", asCpu["attention.fusedByDefaultFromScoresPerHead"]);
        Assert.Equal("false", asCpu["tunesProducts"]);

        var gpu = Leaves(DevicePlan.For(H100, tuned).ToJson());
        var forced = Leaves(DevicePlan.For(cpu, tuned with { PlanForGpu = true }).ToJson());
        Assert.Equal("true", forced["plansForGpu"]);
        // But for how full a slice of a GPU-time budget is packed: that follows how the device's
        // time varies, a CPU's threads' scheduling, whichever kernels it runs.
        Assert.Equal("1", gpu["sliceFill"]);
        Assert.Equal("0.5", forced["sliceFill"]);
        gpu.Remove("sliceFill");
        forced.Remove("sliceFill");
        Assert.Equal(gpu, forced);
        Assert.Equal("by-shape", forced["portableProduct.rule"]);
        Assert.Equal("true", forced["tunesProducts"]);
    }

    /// <summary>Every leaf of a JSON tree by its dotted path: a string as itself, any other value
    /// (and null) as JSON text.</summary>
    static Dictionary<string, string> Leaves(JsonNode? node, string path = "", Dictionary<string, string>? into = null)
    {
        into ??= new();
        if (node is JsonObject o)
            foreach (var (k, v) in o) Leaves(v, path.Length == 0 ? k : $"{path}.{k}", into);
        else
            into[path] = node is JsonValue value && value.TryGetValue<string>(out var s) ? s : node?.ToJsonString() ?? "null";
        return into;
    }
}
