using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>What a host declares: <see cref="HostFeatures.FromChain"/> reads a feature chain as a
/// host (or issue 19's C ABI) passes it, and <see cref="DevicePlan.ForAdopted"/> plans among the
/// capabilities as declared: a feature counts where the device has it and the host enabled it.</summary>
public sealed unsafe class HostFeaturesTests
{
    [Fact]
    public void ReadsTheCoreAggregatesFromADeviceCreateInfo()
    {
        var v13 = new PhysicalDeviceVulkan13Features { SType = StructureType.PhysicalDeviceVulkan13Features, Synchronization2 = true };
        var v12 = new PhysicalDeviceVulkan12Features
        {
            SType = StructureType.PhysicalDeviceVulkan12Features, PNext = &v13,
            TimelineSemaphore = true, ShaderFloat16 = true, VulkanMemoryModel = true,
        };
        var v11 = new PhysicalDeviceVulkan11Features { SType = StructureType.PhysicalDeviceVulkan11Features, PNext = &v12, StorageBuffer16BitAccess = true };
        var features2 = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = &v11 };
        var info = new DeviceCreateInfo { SType = StructureType.DeviceCreateInfo, PNext = &features2 };

        Assert.Equal(new HostFeatures { TimelineSemaphore = true, ShaderFloat16 = true, VulkanMemoryModel = true, StorageBuffer16BitAccess = true },
                     HostFeatures.FromChain((nint)(&info)));
        // From the VkPhysicalDeviceFeatures2 or the first structure after it: the same.
        Assert.Equal(HostFeatures.FromChain((nint)(&info)), HostFeatures.FromChain((nint)(&features2)));
        Assert.Equal(new HostFeatures { TimelineSemaphore = true, ShaderFloat16 = true, VulkanMemoryModel = true },
                     HostFeatures.FromChain((nint)(&v12)));
    }

    [Fact]
    public void ReadsTheExtensionStructures()
    {
        var executable = new PhysicalDevicePipelineExecutablePropertiesFeaturesKHR
        {
            SType = StructureType.PhysicalDevicePipelineExecutablePropertiesFeaturesKhr, PipelineExecutableInfo = true,
        };
        var nv2 = new PhysicalDeviceCooperativeMatrix2FeaturesNV
        {
            SType = StructureType.PhysicalDeviceCooperativeMatrix2FeaturesNV, PNext = &executable,
            CooperativeMatrixWorkgroupScope = true, CooperativeMatrixFlexibleDimensions = true, CooperativeMatrixTensorAddressing = true,
        };
        var nv = new PhysicalDeviceCooperativeMatrixFeaturesNV { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesNV, PNext = &nv2, CooperativeMatrix = true };
        var khr = new PhysicalDeviceCooperativeMatrixFeaturesKHR { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr, PNext = &nv, CooperativeMatrix = true };
        var model = new PhysicalDeviceVulkanMemoryModelFeatures { SType = StructureType.PhysicalDeviceVulkanMemoryModelFeatures, PNext = &khr, VulkanMemoryModel = true };
        var f16 = new PhysicalDeviceShaderFloat16Int8Features { SType = StructureType.PhysicalDeviceShaderFloat16Int8Features, PNext = &model, ShaderFloat16 = true, ShaderInt8 = true };
        var s16 = new PhysicalDevice16BitStorageFeatures { SType = StructureType.PhysicalDevice16BitStorageFeatures, PNext = &f16, StorageBuffer16BitAccess = true };
        var timeline = new PhysicalDeviceTimelineSemaphoreFeatures { SType = StructureType.PhysicalDeviceTimelineSemaphoreFeatures, PNext = &s16, TimelineSemaphore = true };

        var all = new HostFeatures
        {
            TimelineSemaphore = true, StorageBuffer16BitAccess = true, ShaderFloat16 = true, ShaderInt8 = true, VulkanMemoryModel = true,
            CooperativeMatrixKhr = true, CooperativeMatrixNv = true, CooperativeMatrix2Nv = true, PipelineExecutableInfo = true,
        };
        Assert.Equal(all, HostFeatures.FromChain((nint)(&timeline)));

        // The workgroup-scope kernel uses all three of cooperative_matrix2's features: two are not enough.
        nv2.CooperativeMatrixTensorAddressing = false;
        Assert.Equal(all with { CooperativeMatrix2Nv = false }, HostFeatures.FromChain((nint)(&timeline)));
        // A structure that says false does not take away what another enabled.
        var v12 = new PhysicalDeviceVulkan12Features { SType = StructureType.PhysicalDeviceVulkan12Features, PNext = &timeline };
        Assert.Equal(all with { CooperativeMatrix2Nv = false }, HostFeatures.FromChain((nint)(&v12)));
        Assert.Equal(new HostFeatures(), HostFeatures.FromChain(0));
    }

    /// <summary>Subgroup size control needs both its features, from the Vulkan 1.3 aggregate or
    /// the extension's structure; the plan pins the matrix units' subgroups (and uses the KHR
    /// units at all) only where the host declared them with the extension enabled or at Vulkan 1.3.</summary>
    [Fact]
    public void SubgroupSizeControlAsTheHostEnabledIt()
    {
        var v13 = new PhysicalDeviceVulkan13Features { SType = StructureType.PhysicalDeviceVulkan13Features, SubgroupSizeControl = true, ComputeFullSubgroups = true };
        Assert.Equal(new HostFeatures { SubgroupSizeControl = true }, HostFeatures.FromChain((nint)(&v13)));
        v13.ComputeFullSubgroups = false;
        Assert.Equal(new HostFeatures(), HostFeatures.FromChain((nint)(&v13)));
        var ext = new PhysicalDeviceSubgroupSizeControlFeatures { SType = StructureType.PhysicalDeviceSubgroupSizeControlFeatures, SubgroupSizeControl = true, ComputeFullSubgroups = true };
        Assert.Equal(new HostFeatures { SubgroupSizeControl = true }, HostFeatures.FromChain((nint)(&ext)));

        // Where it is not declared the KHR units are not used (they need full subgroups), so the
        // NV units, which run unpinned, show whether the plan pins.
        DevicePlan Plan(HostDevice host, DeviceCapabilities? device = null) =>
            new(host.Declare(device ?? Gpu), new GpuOptions(), khrBuilt: true, nv2Built: true);
        void Unpinned(DevicePlan plan)
        {
            Assert.False(plan.Capabilities.SubgroupSizeControl);
            Assert.Equal(MatrixUnits.Nv, plan.MatrixUnits);
            Assert.False(plan.MatrixUnitsSubgroupPinned);
        }
        Assert.True(Plan(Host(Everything, Vk.Version12, Khr, Nv, "VK_EXT_subgroup_size_control")).MatrixUnitsSubgroupPinned);
        Assert.True(Plan(Host(Everything, Vk.Version13, Khr, Nv)).MatrixUnitsSubgroupPinned);
        Unpinned(Plan(Host(Everything, Vk.Version12, Khr, Nv)));
        Unpinned(Plan(Host(Everything with { SubgroupSizeControl = false }, Vk.Version13, Khr, Nv, "VK_EXT_subgroup_size_control")));
        // Core 1.3 needs the device at 1.3 too, not only the host's instance.
        Unpinned(Plan(Host(Everything, Vk.Version13, Khr, Nv), Gpu with { ApiVersion = "1.2.198" }));
    }

    /// <summary>bf16 fragments need both of VK_KHR_shader_bfloat16's features the kernels declare:
    /// the type and the cooperative matrices of it.</summary>
    [Fact]
    public void ReadsTheBf16Structure()
    {
        var bf16 = new PhysicalDeviceShaderBfloat16FeaturesKHR
        {
            SType = StructureType.PhysicalDeviceShaderBfloat16FeaturesKhr, ShaderBFloat16Type = true, ShaderBFloat16CooperativeMatrix = true,
        };
        var timeline = new PhysicalDeviceTimelineSemaphoreFeatures { SType = StructureType.PhysicalDeviceTimelineSemaphoreFeatures, PNext = &bf16, TimelineSemaphore = true };
        Assert.Equal(new HostFeatures { TimelineSemaphore = true, ShaderBFloat16CooperativeMatrix = true }, HostFeatures.FromChain((nint)(&timeline)));
        bf16.ShaderBFloat16CooperativeMatrix = false;
        Assert.Equal(new HostFeatures { TimelineSemaphore = true }, HostFeatures.FromChain((nint)(&timeline)));
        bf16.ShaderBFloat16CooperativeMatrix = true;
        bf16.ShaderBFloat16Type = false;
        Assert.Equal(new HostFeatures { TimelineSemaphore = true }, HostFeatures.FromChain((nint)(&timeline)));
    }

    static DeviceCapabilities Gpu => new()
    {
        Index = 0, Name = "test GPU", Vendor = "test", VendorId = 0, DeviceType = "discrete",
        DriverName = "test", DriverInfo = "", DriverVersion = "1.0.0", ApiVersion = "1.3.0",
        SubgroupSize = 32, ShaderFloat16 = true, StorageBuffer16Bit = true, ShaderInt8 = true,
        BFloat16 = false, CooperativeMatrixKhr = true, CooperativeMatrixNv = true, CooperativeMatrixShapes = [], MaxStorageBufferRange = 1 << 27,
        MaxMemoryAllocationSize = 1 << 30, MaxComputeSharedMemorySize = 49152, MaxComputeWorkGroupInvocations = 1024, MaxPushConstantsSize = 128,
        MaxWorkGroupCountX = 65535, MaxWorkGroupCountY = 65535, MaxWorkGroupCountZ = 65535,
        TimestampsSupported = true, TimestampPeriodNs = 1, Heaps = [], PipelineCacheKey = "key",
        CooperativeMatrix2Nv = true, CooperativeMatrix2Shapes = [new(128, 32, 16, 16), new(256, 32, 32, 16)], CooperativeMatrix2MaxDimension = 1024,
        PipelineExecutableStatistics = true, SubgroupSizeControl = true, MaxSubgroupSize = 32,
    };

    static readonly HostFeatures Everything = new()
    {
        TimelineSemaphore = true, StorageBuffer16BitAccess = true, ShaderFloat16 = true, ShaderInt8 = true, VulkanMemoryModel = true,
        CooperativeMatrixKhr = true, CooperativeMatrixNv = true, CooperativeMatrix2Nv = true, PipelineExecutableInfo = true, SubgroupSizeControl = true,
    };

    static HostDevice Host(HostFeatures features, uint apiVersion, params string[] extensions) => new()
    {
        Instance = default, PhysicalDevice = default, Device = default, ApiVersion = apiVersion, QueueFamily = 0,
        EnabledFeatures = features, EnabledExtensions = extensions,
    };

    static DevicePlan Plan(HostDevice host, MatrixUnitsRequest request = MatrixUnitsRequest.Auto, bool statistics = false) =>
        new(host.Declare(Gpu), new GpuOptions { MatrixUnits = request, PipelineStatistics = statistics }, khrBuilt: true, nv2Built: true);

    const string Khr = "VK_KHR_cooperative_matrix", Nv = "VK_NV_cooperative_matrix", Nv2 = "VK_NV_cooperative_matrix2",
                 Executable = "VK_KHR_pipeline_executable_properties", Bf16 = "VK_KHR_shader_bfloat16";

    /// <summary>On a device whose units multiply bf16 fragments, an adopted context multiplies
    /// them where its host enabled VK_KHR_shader_bfloat16 with its features beside the KHR units,
    /// as a context that created the device would (bf16 activations, the plan's default on such a
    /// GPU); fp16 fragments where the host left either out, or the units' own extension; asked for
    /// bf16 where undeclared, an error.</summary>
    [Fact]
    public void Bf16FragmentsAsTheHostEnabledThem()
    {
        var bf16Gpu = Gpu with { BFloat16 = true, CooperativeMatrixBf16 = true };
        var declared = Everything with { ShaderBFloat16CooperativeMatrix = true };
        DevicePlan Plan(HostDevice host, GpuOptions? options = null) =>
            new(host.Declare(bf16Gpu), options ?? new GpuOptions(), khrBuilt: true, nv2Built: true, bf16Built: true);

        var plan = Plan(Host(declared, Vk.Version13, Khr, Bf16));
        Assert.Equal(ActivationPrecision.Bf16, plan.Activations);
        Assert.Equal(MatrixUnitsOperands.Bf16, plan.MatrixUnitsOperands);
        Assert.Equal("matmul_coopmat_khr_bf16", (string?)plan.ToJson()["matrixUnitsProduct"]!["kernel"]);

        Assert.Equal(MatrixUnitsOperands.Fp16, Plan(Host(declared, Vk.Version13, Khr)).MatrixUnitsOperands);
        Assert.Equal(MatrixUnitsOperands.Fp16, Plan(Host(Everything, Vk.Version13, Khr, Bf16)).MatrixUnitsOperands);
        Assert.Equal(MatrixUnits.Nv, Plan(Host(declared, Vk.Version13, Nv, Bf16)).MatrixUnits);
        Assert.Equal(MatrixUnitsOperands.Fp16, Plan(Host(declared, Vk.Version13, Nv, Bf16)).MatrixUnitsOperands);
        // A device without the units' bf16 shape: the host's declaration adds nothing.
        Assert.Equal(MatrixUnitsOperands.Fp16,
            new DevicePlan(Host(declared, Vk.Version13, Khr, Bf16).Declare(Gpu), new GpuOptions(), khrBuilt: true, nv2Built: true, bf16Built: true).MatrixUnitsOperands);
        var e = Assert.Throws<GpuException>(() =>
            Plan(Host(Everything, Vk.Version13, Khr, Bf16), new GpuOptions { MatrixUnitsOperands = MatrixUnitsOperandsRequest.Bf16 }));
        Assert.Contains("VK_KHR_shader_bfloat16", e.Message);
        Assert.Contains("as its host enabled it", e.Message);
    }

    /// <summary>The matrix units run on an adopted device where the host enabled the extension
    /// and what the kernel needs (feature, fp16, 16-bit storage, memory model), through the same
    /// choice as on a created device; a device that has them but whose host did not enable them runs none.</summary>
    [Fact]
    public void MatrixUnitsAsTheHostEnabledThem()
    {
        Assert.Equal(MatrixUnits.Khr, Plan(Host(Everything, Vk.Version13, Khr, Nv)).MatrixUnits);
        Assert.Equal(MatrixUnits.Nv, Plan(Host(Everything, Vk.Version13, Nv)).MatrixUnits);
        Assert.Equal(MatrixUnits.None, Plan(Host(Everything, Vk.Version13)).MatrixUnits);
        Assert.Equal(MatrixUnits.None, Plan(Host(Everything with { CooperativeMatrixKhr = false }, Vk.Version13, Khr)).MatrixUnits);
        Assert.Equal(MatrixUnits.None, Plan(Host(Everything with { VulkanMemoryModel = false }, Vk.Version13, Khr, Nv)).MatrixUnits);
        Assert.Equal(MatrixUnits.None, Plan(Host(Everything with { ShaderFloat16 = false }, Vk.Version13, Khr)).MatrixUnits);
        // The KHR kernels' SPIR-V 1.5 must run in full subgroups: without them the NV units, else none.
        Assert.Equal(MatrixUnits.Nv, Plan(Host(Everything with { SubgroupSizeControl = false }, Vk.Version13, Khr, Nv)).MatrixUnits);
        Assert.Equal(MatrixUnits.None, Plan(Host(Everything, Vk.Version12, Khr)).MatrixUnits);
        Assert.Equal(MatrixUnits.Khr, Plan(Host(Everything, Vk.Version12, Khr, "VK_EXT_subgroup_size_control")).MatrixUnits);
        Assert.Equal(MatrixUnits.Nv2, Plan(Host(Everything, Vk.Version13, Khr, Nv2), MatrixUnitsRequest.Nv2).MatrixUnits);
        // Its SPIR-V 1.6 needs the host's instance at 1.3.
        var e = Assert.Throws<GpuException>(() => Plan(Host(Everything, Vk.Version12, Khr, Nv2), MatrixUnitsRequest.Nv2));
        Assert.Contains("as its host enabled it", e.Message);
        e = Assert.Throws<GpuException>(() => Plan(Host(Everything, Vk.Version13, Nv), MatrixUnitsRequest.Khr));
        Assert.Contains("VK_KHR_cooperative_matrix", e.Message);
        Assert.Contains("as its host enabled it", e.Message);
    }

    [Fact]
    public void PlansAmongTheDeclaredCapabilities()
    {
        var bare = Plan(Host(new HostFeatures { TimelineSemaphore = true }, Vk.Version12), statistics: true);
        Assert.True(bare.Adopted);
        Assert.True((bool?)bare.ToJson()["adopted"]);
        Assert.False(bare.Capabilities.StorageBuffer16Bit);
        Assert.False(bare.Capabilities.ShaderFloat16);
        Assert.False(bare.Capabilities.ShaderInt8);
        Assert.False(bare.PipelineStatistics);
        var e = Assert.Throws<GpuException>(() => WeightPrecision.Bf16.Require(bare.Capabilities));
        Assert.Contains("storageBuffer16BitAccess", e.Message);
        WeightPrecision.Fp32.Require(bare.Capabilities);

        var full = Plan(Host(Everything, Vk.Version13, Executable), statistics: true);
        Assert.True(full.Capabilities.StorageBuffer16Bit && full.Capabilities.ShaderFloat16 && full.Capabilities.ShaderInt8);
        Assert.True(full.PipelineStatistics);
        Assert.False(DevicePlan.For(Gpu, new GpuOptions()).Adopted);
        Assert.False((bool?)DevicePlan.For(Gpu, new GpuOptions()).ToJson()["adopted"]);
    }
}
