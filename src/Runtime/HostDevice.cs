using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>
/// A Vulkan device a host created and lends to VkPrompt (<see cref="GpuContext.Adopt(HostDevice, GpuOptions?)"/>),
/// declared the way the host made it: Vulkan cannot report what a host enabled, so the host says,
/// and the context uses what is declared and nothing more (IREE's and Unity's way of sharing a
/// device). The host keeps ownership of every handle and destroys them after the context.
/// </summary>
public sealed record HostDevice
{
    /// <summary>The host's loader entry, vkGetInstanceProcAddr (PFN_vkGetInstanceProcAddr); every
    /// Vulkan function the context calls is resolved through it, so a host with its own loader or
    /// layers is called through them. 0: the system loader (libvulkan).</summary>
    public nint GetInstanceProcAddr { get; init; }

    /// <summary>The host's instance.</summary>
    public required Instance Instance { get; init; }

    /// <summary>The physical device <see cref="Device"/> was made on.</summary>
    public required PhysicalDevice PhysicalDevice { get; init; }

    /// <summary>The host's logical device.</summary>
    public required Device Device { get; init; }

    /// <summary>The API version the host created the instance with (VK_MAKE_API_VERSION); VkPrompt
    /// needs 1.2 or later.</summary>
    public required uint ApiVersion { get; init; }

    /// <summary>The queue family of the queue to submit to; it must support compute.</summary>
    public required uint QueueFamily { get; init; }

    /// <summary>The index of the queue within <see cref="QueueFamily"/> (vkGetDeviceQueue's).</summary>
    public uint QueueIndex { get; init; }

    /// <summary>The device extensions the host enabled (VkDeviceCreateInfo::ppEnabledExtensionNames).</summary>
    public IReadOnlyCollection<string> EnabledExtensions { get; init; } = [];

    /// <summary>The device features the host enabled (its VkDeviceCreateInfo feature chain).</summary>
    public HostFeatures EnabledFeatures { get; init; } = new();

    /// <summary>The host's pipeline cache, which the context's pipelines are created through; the
    /// context neither writes it to disk nor destroys it (the host persists it). If the host
    /// created it with VK_PIPELINE_CACHE_CREATE_EXTERNALLY_SYNCHRONIZED_BIT, the host must not use
    /// it while the context creates pipelines. A null handle: none (unless
    /// <see cref="GpuOptions.PipelineCacheDirectory"/> names a directory; both is refused).</summary>
    public PipelineCache PipelineCache { get; init; }

    /// <summary>Called around every vkQueueSubmit of the context, where the host shares the queue
    /// with its own threads (Vulkan requires submits to one queue to be externally
    /// synchronised); null: the host does not submit to this queue while the context works.</summary>
    public QueueLock? QueueLock { get; init; }

    /// <summary>The host enabled VK_EXT_memory_budget, so the heaps' budgets may be read and the
    /// pool stays inside them (<see cref="DevicePlan.MemoryBudget"/>).</summary>
    internal bool MemoryBudgetEnabled => EnabledExtensions.Contains(DeviceCapabilities.MemoryBudgetExtension);

    /// <summary>Refuses, naming everything missing at once, a declaration VkPrompt cannot work
    /// with: Vulkan before 1.2 (the host's <see cref="ApiVersion"/> or the device's
    /// <paramref name="deviceApiVersion"/>), a queue that is not there or whose family lacks
    /// compute (<paramref name="families"/>: the physical device's queue families), timeline
    /// semaphores not enabled. A function of the facts alone, so each refusal can be tested
    /// on any device.</summary>
    internal void Check(uint deviceApiVersion, ReadOnlySpan<QueueFamilyProperties> families)
    {
        var missing = new List<string>();
        if (!AtLeast(ApiVersion, 1, 2))
            missing.Add($"Vulkan 1.2 or later (HostDevice.ApiVersion is {VersionText(ApiVersion)})");
        if (!AtLeast(deviceApiVersion, 1, 2))
            missing.Add($"Vulkan 1.2 or later (the physical device supports {VersionText(deviceApiVersion)})");
        if (QueueFamily >= families.Length)
            missing.Add($"an existing queue family (HostDevice.QueueFamily is {QueueFamily}; the device has {families.Length})");
        else
        {
            var family = families[(int)QueueFamily];
            if (!family.QueueFlags.HasFlag(QueueFlags.ComputeBit))
                missing.Add($"compute on the queue's family (HostDevice.QueueFamily {QueueFamily} has {family.QueueFlags})");
            if (QueueIndex >= family.QueueCount)
                missing.Add($"an existing queue (HostDevice.QueueIndex is {QueueIndex}; family {QueueFamily} has {family.QueueCount})");
        }
        if (!EnabledFeatures.TimelineSemaphore)
            missing.Add("the timelineSemaphore feature (HostFeatures.TimelineSemaphore: every submit signals a timeline value)");
        if (missing.Count > 0)
            throw new GpuException($"GpuContext.Adopt: the host's device lacks what VkPrompt needs: {string.Join("; ", missing)}");
    }

    /// <summary>The capabilities of <paramref name="device"/> as the host enabled them: a
    /// feature counts only where the device has it and the host declares it enabled (and its
    /// extension, for an extension's), so the plan chooses among what the host's device can
    /// really run, the matrix units included (and then uses them as on a device it created).</summary>
    internal DeviceCapabilities Declare(DeviceCapabilities device)
    {
        var f = EnabledFeatures;
        bool Enabled(string extension) => EnabledExtensions.Contains(extension);
        // What every matrix-unit kernel uses beside its extension (DeviceBringUp.CreateDevice enables the same).
        bool basics = f.ShaderFloat16 && f.StorageBuffer16BitAccess && f.VulkanMemoryModel;
        // Core in Vulkan 1.3 (the host's instance and the device both), where the host
        // enables it without the extension.
        bool sizeControl = device.SubgroupSizeControl && f.SubgroupSizeControl
                           && (Enabled(DeviceCapabilities.SubgroupSizeControlExtension)
                               || AtLeast(ApiVersion, 1, 3) && Version.TryParse(device.ApiVersion, out var v) && v >= new Version(1, 3));
        // The KHR kernels run in full subgroups (DeviceCapabilities.CooperativeMatrixKhr).
        bool khr = device.CooperativeMatrixKhr && basics && f.CooperativeMatrixKhr && Enabled(DeviceCapabilities.KhrCooperativeMatrixExtension) && sizeControl;
        return device with
        {
            DeclaredByHost = true,
            StorageBuffer16Bit = device.StorageBuffer16Bit && f.StorageBuffer16BitAccess,
            ShaderFloat16 = device.ShaderFloat16 && f.ShaderFloat16,
            ShaderInt8 = device.ShaderInt8 && f.ShaderInt8,
            CooperativeMatrixKhr = khr,
            CooperativeMatrixBf16 = device.CooperativeMatrixBf16 && khr && f.ShaderBFloat16CooperativeMatrix && Enabled(DeviceCapabilities.ShaderBfloat16Extension),
            CooperativeMatrixNv = device.CooperativeMatrixNv && basics && f.CooperativeMatrixNv && Enabled(DeviceCapabilities.NvCooperativeMatrixExtension),
            // Its SPIR-V is 1.6, which needs the host's instance at Vulkan 1.3 too.
            CooperativeMatrix2Nv = device.CooperativeMatrix2Nv && khr && f.CooperativeMatrix2Nv && Enabled(DeviceCapabilities.NvCooperativeMatrix2Extension)
                                   && AtLeast(ApiVersion, 1, 3),
            PipelineExecutableStatistics = device.PipelineExecutableStatistics && f.PipelineExecutableInfo
                                           && Enabled(DeviceCapabilities.PipelineExecutablePropertiesExtension),
            MemoryBudget = device.MemoryBudget && MemoryBudgetEnabled,
            SubgroupSizeControl = sizeControl,
        };
    }

    static bool AtLeast(uint version, uint major, uint minor)
    {
        uint ma = (version >> 22) & 0x7f, mi = (version >> 12) & 0x3ff;
        return ma > major || (ma == major && mi >= minor);
    }

    static string VersionText(uint v) => $"{(v >> 22) & 0x7f}.{(v >> 12) & 0x3ff}.{v & 0xfff}";
}

/// <summary>The host's lock on a shared queue: <paramref name="Acquire"/> is called right before
/// each vkQueueSubmit of the context and <paramref name="Release"/> right after it (also when it
/// fails), on the thread that submits.</summary>
/// <param name="Acquire">Takes the host's queue lock (blocks until it is free).</param>
/// <param name="Release">Releases it.</param>
public sealed record QueueLock(Action Acquire, Action Release);


/// <summary>The device features a host enabled that VkPrompt may use (a subset of its
/// VkDeviceCreateInfo feature chain; <see cref="FromChain"/> reads them from the chain itself). A
/// feature not declared is not used, whatever the device supports.</summary>
public sealed record HostFeatures
{
    /// <summary>timelineSemaphore (VkPhysicalDeviceVulkan12Features or
    /// VkPhysicalDeviceTimelineSemaphoreFeatures): required, tickets are timeline values.</summary>
    public bool TimelineSemaphore { get; init; }

    /// <summary>storageBuffer16BitAccess (VkPhysicalDeviceVulkan11Features or
    /// VkPhysicalDevice16BitStorageFeatures): required for fp16/bf16 weights.</summary>
    public bool StorageBuffer16BitAccess { get; init; }

    /// <summary>shaderFloat16 (VkPhysicalDeviceVulkan12Features or
    /// VkPhysicalDeviceShaderFloat16Int8Features): fp16 arithmetic, for the matrix-unit kernels
    /// (emulated too) and the 16-bit copies of activations.</summary>
    public bool ShaderFloat16 { get; init; }

    /// <summary>shaderInt8 (the same structures).</summary>
    public bool ShaderInt8 { get; init; }

    /// <summary>vulkanMemoryModel (VkPhysicalDeviceVulkan12Features or
    /// VkPhysicalDeviceVulkanMemoryModelFeatures): the matrix-unit kernels need it.</summary>
    public bool VulkanMemoryModel { get; init; }

    /// <summary>VkPhysicalDeviceCooperativeMatrixFeaturesKHR::cooperativeMatrix, with
    /// VK_KHR_cooperative_matrix in <see cref="HostDevice.EnabledExtensions"/>: the matrix units
    /// through <see cref="MatrixUnits.Khr"/>.</summary>
    public bool CooperativeMatrixKhr { get; init; }

    /// <summary>subgroupSizeControl and computeFullSubgroups, both (VkPhysicalDeviceVulkan13Features
    /// or VkPhysicalDeviceSubgroupSizeControlFeatures), with VK_EXT_subgroup_size_control enabled or
    /// Vulkan 1.3: the matrix units' kernels then run in full subgroups of the size they are
    /// written for (<see cref="DevicePlan.MatrixUnitsSubgroupPinned"/>).</summary>
    public bool SubgroupSizeControl { get; init; }

    /// <summary>VkPhysicalDeviceShaderBfloat16FeaturesKHR's shaderBFloat16Type and
    /// shaderBFloat16CooperativeMatrix, both (what matmul_coopmat*_khr_bf16.comp declares), with
    /// VK_KHR_shader_bfloat16 enabled beside the KHR matrix units: bf16 fragments on them
    /// (<see cref="DevicePlan.MatrixUnitsOperands"/>), which the plan then chooses as on a device it created.</summary>
    public bool ShaderBFloat16CooperativeMatrix { get; init; }

    /// <summary>VkPhysicalDeviceCooperativeMatrixFeaturesNV::cooperativeMatrix, with
    /// VK_NV_cooperative_matrix enabled: <see cref="MatrixUnits.Nv"/>.</summary>
    public bool CooperativeMatrixNv { get; init; }

    /// <summary>VkPhysicalDeviceCooperativeMatrix2FeaturesNV's cooperativeMatrixWorkgroupScope,
    /// cooperativeMatrixFlexibleDimensions and cooperativeMatrixTensorAddressing, all three
    /// (what matmul_coopmat_nv2.comp uses), with VK_NV_cooperative_matrix2 enabled beside the KHR
    /// extension and Vulkan 1.3: <see cref="MatrixUnits.Nv2"/>.</summary>
    public bool CooperativeMatrix2Nv { get; init; }

    /// <summary>VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR::pipelineExecutableInfo,
    /// with VK_KHR_pipeline_executable_properties enabled: <see cref="GpuOptions.PipelineStatistics"/>.</summary>
    public bool PipelineExecutableInfo { get; init; }

    /// <summary>The features above as a Vulkan feature chain holds them: <paramref name="chain"/>
    /// points to its first structure (a VkDeviceCreateInfo, a VkPhysicalDeviceFeatures2 or any
    /// structure of the chain) and every structure linked from it through pNext is read;
    /// structures VkPrompt does not read are skipped. A feature is enabled where any structure
    /// enables it (the Vulkan 1.1/1.2/1.3 aggregates or the extension structures). 0: none.</summary>
    public static unsafe HostFeatures FromChain(nint chain)
    {
        var f = new HostFeatures();
        for (var s = (BaseInStructure*)chain; s != null; s = s->PNext)
        {
            f = s->SType switch
            {
                StructureType.PhysicalDeviceVulkan11Features => f with
                {
                    StorageBuffer16BitAccess = f.StorageBuffer16BitAccess || ((PhysicalDeviceVulkan11Features*)s)->StorageBuffer16BitAccess,
                },
                StructureType.PhysicalDeviceVulkan12Features => Read12(f, (PhysicalDeviceVulkan12Features*)s),
                StructureType.PhysicalDevice16BitStorageFeatures => f with
                {
                    StorageBuffer16BitAccess = f.StorageBuffer16BitAccess || ((PhysicalDevice16BitStorageFeatures*)s)->StorageBuffer16BitAccess,
                },
                StructureType.PhysicalDeviceTimelineSemaphoreFeatures => f with
                {
                    TimelineSemaphore = f.TimelineSemaphore || ((PhysicalDeviceTimelineSemaphoreFeatures*)s)->TimelineSemaphore,
                },
                StructureType.PhysicalDeviceShaderFloat16Int8Features => f with
                {
                    ShaderFloat16 = f.ShaderFloat16 || ((PhysicalDeviceShaderFloat16Int8Features*)s)->ShaderFloat16,
                    ShaderInt8 = f.ShaderInt8 || ((PhysicalDeviceShaderFloat16Int8Features*)s)->ShaderInt8,
                },
                StructureType.PhysicalDeviceVulkanMemoryModelFeatures => f with
                {
                    VulkanMemoryModel = f.VulkanMemoryModel || ((PhysicalDeviceVulkanMemoryModelFeatures*)s)->VulkanMemoryModel,
                },
                StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr => f with
                {
                    CooperativeMatrixKhr = f.CooperativeMatrixKhr || ((PhysicalDeviceCooperativeMatrixFeaturesKHR*)s)->CooperativeMatrix,
                },
                StructureType.PhysicalDeviceShaderBfloat16FeaturesKhr => f with
                {
                    ShaderBFloat16CooperativeMatrix = f.ShaderBFloat16CooperativeMatrix || Bf16Fragments((PhysicalDeviceShaderBfloat16FeaturesKHR*)s),
                },
                StructureType.PhysicalDeviceCooperativeMatrixFeaturesNV => f with
                {
                    CooperativeMatrixNv = f.CooperativeMatrixNv || ((PhysicalDeviceCooperativeMatrixFeaturesNV*)s)->CooperativeMatrix,
                },
                StructureType.PhysicalDeviceCooperativeMatrix2FeaturesNV => f with
                {
                    CooperativeMatrix2Nv = f.CooperativeMatrix2Nv || Nv2((PhysicalDeviceCooperativeMatrix2FeaturesNV*)s),
                },
                StructureType.PhysicalDevicePipelineExecutablePropertiesFeaturesKhr => f with
                {
                    PipelineExecutableInfo = f.PipelineExecutableInfo || ((PhysicalDevicePipelineExecutablePropertiesFeaturesKHR*)s)->PipelineExecutableInfo,
                },
                StructureType.PhysicalDeviceVulkan13Features => f with
                {
                    SubgroupSizeControl = f.SubgroupSizeControl || FullSubgroups(((PhysicalDeviceVulkan13Features*)s)->SubgroupSizeControl, ((PhysicalDeviceVulkan13Features*)s)->ComputeFullSubgroups),
                },
                StructureType.PhysicalDeviceSubgroupSizeControlFeatures => f with
                {
                    SubgroupSizeControl = f.SubgroupSizeControl || FullSubgroups(((PhysicalDeviceSubgroupSizeControlFeatures*)s)->SubgroupSizeControl, ((PhysicalDeviceSubgroupSizeControlFeatures*)s)->ComputeFullSubgroups),
                },
                // The core VkPhysicalDeviceFeatures hold nothing VkPrompt uses.
                _ => f,
            };
        }
        return f;
    }

    static unsafe HostFeatures Read12(HostFeatures f, PhysicalDeviceVulkan12Features* v) => f with
    {
        TimelineSemaphore = f.TimelineSemaphore || v->TimelineSemaphore,
        ShaderFloat16 = f.ShaderFloat16 || v->ShaderFloat16,
        ShaderInt8 = f.ShaderInt8 || v->ShaderInt8,
        VulkanMemoryModel = f.VulkanMemoryModel || v->VulkanMemoryModel,
    };

    static bool FullSubgroups(bool sizeControl, bool computeFullSubgroups) => sizeControl && computeFullSubgroups;

    static unsafe bool Bf16Fragments(PhysicalDeviceShaderBfloat16FeaturesKHR* v) =>
        v->ShaderBFloat16Type && v->ShaderBFloat16CooperativeMatrix;

    static unsafe bool Nv2(PhysicalDeviceCooperativeMatrix2FeaturesNV* v) =>
        v->CooperativeMatrixWorkgroupScope && v->CooperativeMatrixFlexibleDimensions && v->CooperativeMatrixTensorAddressing;
}
