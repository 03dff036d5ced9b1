using System.Text;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>One Vulkan memory heap: its size in bytes and whether it is the device's own memory
/// (where buffers are placed) rather than host memory the device can reach.</summary>
public sealed record MemoryHeapInfo(long Size, bool DeviceLocal);

/// <summary>A workgroup size at which VK_NV_cooperative_matrix2 multiplies fp16 into fp32 at
/// workgroup scope, with the granularities a matrix's M, N and K must be multiples of.</summary>
public sealed record CoopMat2Shape(uint Invocations, uint MGranularity, uint NGranularity, uint KGranularity);

/// <summary>What one physical device can do: the facts kernel variants and tile shapes are chosen from.</summary>
public sealed record DeviceCapabilities
{
    /// <summary>The device's position in the list Vulkan enumerates, which <see cref="GpuOptions.Device"/> names.</summary>
    public required int Index { get; init; }
    /// <summary>The driver's device name, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)".</summary>
    public required string Name { get; init; }
    /// <summary>The vendor's name where its PCI id is known (NVIDIA, AMD, Intel, ...), else the id in hex.</summary>
    public required string Vendor { get; init; }
    /// <summary>The PCI vendor id the driver reports.</summary>
    public required uint VendorId { get; init; }
    /// <summary>"discrete", "integrated", "virtual", "cpu" (a software rasteriser such as lavapipe) or "other"; several per-device choices differ on "cpu".</summary>
    public required string DeviceType { get; init; }
    /// <summary>The driver's name (VkPhysicalDeviceDriverProperties), "unknown" where it gives none.</summary>
    public required string DriverName { get; init; }
    /// <summary>The driver's free-form build description, as reported (may be empty).</summary>
    public required string DriverInfo { get; init; }
    /// <summary>The driver version decoded by the vendor's own packing (as vulkaninfo shows it).</summary>
    public required string DriverVersion { get; init; }
    /// <summary>The highest Vulkan version the device supports, as "major.minor.patch".</summary>
    public required string ApiVersion { get; init; }
    /// <summary>The invocations in one subgroup (32 on NVIDIA; lavapipe's follows its vector width); row kernels and the matrix units are sized by it.</summary>
    public required uint SubgroupSize { get; init; }
    /// <summary>Whether shaders may compute in fp16 (shaderFloat16); the matrix-unit kernels need it.</summary>
    public required bool ShaderFloat16 { get; init; }
    /// <summary>Whether buffers may hold 16-bit values (storageBuffer16BitAccess): what fp16 and bf16 weights need.</summary>
    public required bool StorageBuffer16Bit { get; init; }
    /// <summary>Whether shaders may compute on 8-bit integers (shaderInt8); enabled where present, though no kernel computes on them.</summary>
    public required bool ShaderInt8 { get; init; }
    /// <summary>Whether the device lists VK_KHR_shader_bfloat16 (what the bf16 fragments need of it is
    /// <see cref="CooperativeMatrixBf16"/>; the other kernels widen bf16 by integer shifts).</summary>
    public required bool BFloat16 { get; init; }
    /// <summary>The matrix units multiply bf16 fragments through VK_KHR_cooperative_matrix
    /// (matmul_coopmat*_khr_bf16.comp): VK_KHR_shader_bfloat16 with its shaderBFloat16Type and
    /// shaderBFloat16CooperativeMatrix features, and bf16·bf16+fp32 at subgroup scope in the shape of
    /// <see cref="CooperativeMatrixFragment"/> among the KHR shapes, beside all <see cref="CooperativeMatrixKhr"/> needs. NVIDIA lists that
    /// shape on an H100 (docs/results/h100-2026-11-26c/devices.json, where this report spelled
    /// the bf16 component type by its number, 1000141000).</summary>
    public bool CooperativeMatrixBf16 { get; init; }
    /// <summary>What the matrix-unit product through VK_KHR_cooperative_matrix
    /// (matmul_coopmat_khr.comp) needs of the device is all there: the extension with its feature,
    /// fp16·fp16+fp32 at subgroup scope in a shape the kernels compose their 16x16x16 of
    /// (<see cref="CooperativeMatrixFragment"/>), shaderFloat16, 16-bit storage, the Vulkan
    /// memory model, and <see cref="SubgroupSizeControl"/>: its SPIR-V (1.5) must run in full
    /// subgroups (VUID-RuntimeSpirv-OpTypeCooperativeMatrixKHR-10770). (The build must have compiled that shader too: <see cref="GpuContext.MatrixUnits"/>.)</summary>
    public required bool CooperativeMatrixKhr { get; init; }
    /// <summary>The units' fragment shape the KHR kernels compose their 16x16x16 products of
    /// (<see cref="MatrixFragment.Choose"/>); 16x16x16 where the device lists no KHR shape.</summary>
    public MatrixFragment CooperativeMatrixFragment { get; init; } = MatrixFragment.Whole;
    /// <summary>The same through VK_NV_cooperative_matrix (matmul_coopmat.comp), which NVIDIA's
    /// drivers expose beside the KHR extension.</summary>
    public required bool CooperativeMatrixNv { get; init; }
    /// <summary>What the workgroup-scope product through VK_NV_cooperative_matrix2
    /// (matmul_coopmat_nv2.comp) needs: that extension with workgroup scope, flexible dimensions and
    /// tensor addressing, everything <see cref="CooperativeMatrixKhr"/> needs (it builds on that
    /// extension, whose kernel also runs the products the workgroup-scope one cannot), Vulkan 1.3
    /// (its SPIR-V is 1.6), and fp16·fp16+fp32 at workgroup scope in
    /// <see cref="CooperativeMatrix2Shapes"/>. NVIDIA's drivers expose it; ggml-vulkan's fastest
    /// NVIDIA products run on it.</summary>
    public bool CooperativeMatrix2Nv { get; init; }
    /// <summary>The workgroup sizes and dimension granularities VK_NV_cooperative_matrix2 lists for
    /// fp16·fp16+fp32→fp32 at workgroup scope: a block's dimensions must be multiples of them.</summary>
    public IReadOnlyList<CoopMat2Shape> CooperativeMatrix2Shapes { get; init; } = [];
    /// <summary>The largest dimension a workgroup-scope matrix may have (cooperativeMatrixFlexibleDimensionsMaxDimension).</summary>
    public uint CooperativeMatrix2MaxDimension { get; init; }
    /// <summary>The shapes the KHR extension lists, else the NV one's, as "MxNxK A·B+C→D", for the report.</summary>
    public required IReadOnlyList<string> CooperativeMatrixShapes { get; init; }
    /// <summary>VK_KHR_pipeline_executable_properties with its feature: the driver reports what it
    /// compiled each pipeline into (registers per invocation, spills, shared memory: names and
    /// values are the driver's own), which <see cref="GpuOptions.PipelineStatistics"/> collects.</summary>
    public bool PipelineExecutableStatistics { get; init; }
    /// <summary>A compute pipeline can be made to run in full subgroups of exactly
    /// <see cref="SubgroupSize"/> invocations: VK_EXT_subgroup_size_control with its
    /// subgroupSizeControl and computeFullSubgroups features, compute among its
    /// requiredSubgroupSizeStages, <see cref="SubgroupSize"/> within its range. The matrix units'
    /// kernels are then pinned to that size (<see cref="DevicePlan.MatrixUnitsSubgroupPinned"/>).</summary>
    public bool SubgroupSizeControl { get; init; }
    /// <summary>The largest subgroup size the driver may run a pipeline at (maxSubgroupSize;
    /// <see cref="SubgroupSize"/> where the device lists no VK_EXT_subgroup_size_control).</summary>
    public uint MaxSubgroupSize { get; init; }
    /// <summary>The most subgroups a workgroup of a pipeline pinned to a subgroup size may have
    /// (maxComputeWorkgroupSubgroups); 0 where the device cannot pin one.</summary>
    public uint MaxComputeWorkgroupSubgroups { get; init; }
    /// <summary>These are a host's device's capabilities as it declared them
    /// (<see cref="GpuContext.Adopt(HostDevice, GpuOptions?)"/>): a feature or extension the host did
    /// not enable reads as missing, whatever the device supports.</summary>
    public bool DeclaredByHost { get; init; }
    /// <summary>How messages name the device: its name, and where <see cref="DeclaredByHost"/>, that
    /// what it lacks may be what its host did not enable.</summary>
    internal string Described => DeclaredByHost ? $"{Name} (as its host enabled it: HostDevice.EnabledFeatures, EnabledExtensions)" : Name;
    /// <summary>The device lists VK_EXT_memory_budget: each heap's budget and this process's usage
    /// can be asked, which the memory pool stays within where <see cref="DevicePlan.MemoryBudget"/>.</summary>
    public bool MemoryBudget { get; init; }
    /// <summary>The device lists VK_KHR_portability_subset: a portability driver (MoltenVK on
    /// Apple's Metal) implementing Vulkan less what <see cref="PortabilitySubsetUnsupported"/>
    /// names. The spec requires the extension enabled on such a device; a device the context
    /// creates enables it, and a host that lends one has enabled it likewise.</summary>
    public bool PortabilitySubset { get; init; }
    /// <summary>The features of VkPhysicalDevicePortabilitySubsetFeaturesKHR such a device lacks,
    /// by their Vulkan names (events, imageViewFormatSwizzle, triangleFans, ...). All are
    /// graphics, image-view, sampler or event features; the kernels use compute dispatches on
    /// storage buffers with pipeline barriers and timeline semaphores only, so none constrains
    /// them: they are reported (the device plan prints them), not planned around.</summary>
    public IReadOnlyList<string> PortabilitySubsetUnsupported { get; init; } = [];
    /// <summary>The most bytes one storage-buffer binding may span; larger weights are split across bindings.</summary>
    public required long MaxStorageBufferRange { get; init; }
    /// <summary>The largest single memory allocation the driver accepts, in bytes.</summary>
    public required long MaxMemoryAllocationSize { get; init; }
    /// <summary>Bytes of workgroup-shared memory a compute shader may use; bounds the matrix-unit and fused-attention tiles.</summary>
    public required uint MaxComputeSharedMemorySize { get; init; }
    /// <summary>The most invocations one workgroup may have.</summary>
    public required uint MaxComputeWorkGroupInvocations { get; init; }
    /// <summary>Bytes of push constants a pipeline may take (at least 128 by the spec).</summary>
    public required uint MaxPushConstantsSize { get; init; }
    /// <summary>The most workgroups one dispatch may have along x; a dispatch past these limits is refused with a <see cref="GpuException"/>.</summary>
    public required uint MaxWorkGroupCountX { get; init; }
    /// <summary>The most workgroups one dispatch may have along y.</summary>
    public required uint MaxWorkGroupCountY { get; init; }
    /// <summary>The most workgroups one dispatch may have along z.</summary>
    public required uint MaxWorkGroupCountZ { get; init; }
    /// <summary>Whether a compute queue writes timestamps, so dispatches can be timed on the device.</summary>
    public required bool TimestampsSupported { get; init; }
    /// <summary>Nanoseconds per timestamp tick.</summary>
    public required float TimestampPeriodNs { get; init; }
    /// <summary>The device's memory heaps, as Vulkan lists them.</summary>
    public required IReadOnlyList<MemoryHeapInfo> Heaps { get; init; }
    /// <summary>The pipeline-cache UUID and driver version: a cache written under another key is not reused.</summary>
    public required string PipelineCacheKey { get; init; }

    internal static unsafe DeviceCapabilities Query(Vk vk, Instance instance, PhysicalDevice pd, int index, IReadOnlySet<string> extensions)
    {
        var driver = new PhysicalDeviceDriverProperties { SType = StructureType.PhysicalDeviceDriverProperties };
        // VK_EXT_subgroup_size_control's structures, chained (as every extension's) only where it is listed.
        bool sizeControlListed = extensions.Contains(SubgroupSizeControlExtension);
        var sizeControl = new PhysicalDeviceSubgroupSizeControlProperties { SType = StructureType.PhysicalDeviceSubgroupSizeControlProperties, PNext = &driver };
        var subgroup = new PhysicalDeviceSubgroupProperties { SType = StructureType.PhysicalDeviceSubgroupProperties, PNext = sizeControlListed ? &sizeControl : &driver };
        var maint3 = new PhysicalDeviceMaintenance3Properties { SType = StructureType.PhysicalDeviceMaintenance3Properties, PNext = &subgroup };
        var props2 = new PhysicalDeviceProperties2 { SType = StructureType.PhysicalDeviceProperties2, PNext = &maint3 };
        vk.GetPhysicalDeviceProperties2(pd, &props2);
        var p = props2.Properties;

        // Structures of an extension the device lacks must not be chained, so the cooperative
        // matrix ones go in only where their extension is listed (every such device is Vulkan 1.2
        // or later, which the memory-model structure needs).
        bool nvCoopmat = extensions.Contains(NvCooperativeMatrixExtension);
        bool khrCoopmat = extensions.Contains(KhrCooperativeMatrixExtension);
        var memoryModel = new PhysicalDeviceVulkanMemoryModelFeatures { SType = StructureType.PhysicalDeviceVulkanMemoryModelFeatures };
        var nvFeatures = new PhysicalDeviceCooperativeMatrixFeaturesNV { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesNV, PNext = &memoryModel };
        var khrFeatures = new PhysicalDeviceCooperativeMatrixFeaturesKHR
        {
            SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr,
            PNext = nvCoopmat ? &nvFeatures : &memoryModel,
        };
        void* coopmatChain = khrCoopmat ? &khrFeatures : nvCoopmat ? &nvFeatures : null;
        // VK_KHR_shader_bfloat16's features, chained (as the cooperative matrix ones) only where listed.
        bool bf16Listed = extensions.Contains(ShaderBfloat16Extension);
        var bf16 = new PhysicalDeviceShaderBfloat16FeaturesKHR { SType = StructureType.PhysicalDeviceShaderBfloat16FeaturesKhr, PNext = coopmatChain };
        var f16 = new PhysicalDeviceShaderFloat16Int8Features { SType = StructureType.PhysicalDeviceShaderFloat16Int8Features, PNext = bf16Listed ? &bf16 : coopmatChain };
        var s16 = new PhysicalDevice16BitStorageFeatures { SType = StructureType.PhysicalDevice16BitStorageFeatures, PNext = &f16 };
        // Chained only where the extension is listed, as the cooperative matrix ones.
        bool portabilitySubset = extensions.Contains(PortabilitySubsetExtension);
        var portability = new PhysicalDevicePortabilitySubsetFeaturesKHR { SType = StructureType.PhysicalDevicePortabilitySubsetFeaturesKhr, PNext = &s16 };
        var feats2 = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = portabilitySubset ? &portability : &s16 };
        vk.GetPhysicalDeviceFeatures2(pd, &feats2);
        var coopmat2 = extensions.Contains(NvCooperativeMatrix2Extension) && khrCoopmat ? Coopmat2(vk, instance, pd) : default;
        var nvShapes = nvCoopmat ? NvShapes(vk, instance, pd) : [];
        var khrShapes = khrCoopmat ? KhrShapes(vk, instance, pd) : [];
        var khrFragment = MatrixFragment.Choose(khrShapes.Where(s => s.Subgroup && s.Is(CoopmatShape)).Select(s => s.Shape));
        bool coopmatBasics = memoryModel.VulkanMemoryModel && f16.ShaderFloat16 && s16.StorageBuffer16BitAccess;

        var executableInfo = new PhysicalDevicePipelineExecutablePropertiesFeaturesKHR { SType = StructureType.PhysicalDevicePipelineExecutablePropertiesFeaturesKhr };
        if (extensions.Contains(PipelineExecutablePropertiesExtension))
        {
            var executableFeatures = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = &executableInfo };
            vk.GetPhysicalDeviceFeatures2(pd, &executableFeatures);
        }
        var sizeControlFeatures = new PhysicalDeviceSubgroupSizeControlFeatures { SType = StructureType.PhysicalDeviceSubgroupSizeControlFeatures };
        if (sizeControlListed)
        {
            var sizeControlChain = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = &sizeControlFeatures };
            vk.GetPhysicalDeviceFeatures2(pd, &sizeControlChain);
        }
        // The KHR units take all of it (CooperativeMatrixKhr), though their full subgroups need only
        // computeFullSubgroups: their kernels are pinned wherever they run, one configuration fewer.
        bool sizeControlUsable = sizeControlListed && sizeControlFeatures.SubgroupSizeControl && sizeControlFeatures.ComputeFullSubgroups
                                 && sizeControl.RequiredSubgroupSizeStages.HasFlag(ShaderStageFlags.ComputeBit)
                                 && sizeControl.MinSubgroupSize <= subgroup.SubgroupSize && subgroup.SubgroupSize <= sizeControl.MaxSubgroupSize;

        vk.GetPhysicalDeviceMemoryProperties(pd, out var mem);
        var heaps = new List<MemoryHeapInfo>();
        for (int i = 0; i < mem.MemoryHeapCount; i++)
            heaps.Add(new MemoryHeapInfo((long)mem.MemoryHeaps[i].Size, mem.MemoryHeaps[i].Flags.HasFlag(MemoryHeapFlags.DeviceLocalBit)));

        uint qCount = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(pd, &qCount, null);
        var queues = new QueueFamilyProperties[qCount];
        fixed (QueueFamilyProperties* q = queues) vk.GetPhysicalDeviceQueueFamilyProperties(pd, &qCount, q);
        bool timestamps = queues.Any(q => q.QueueFlags.HasFlag(QueueFlags.ComputeBit) && q.TimestampValidBits > 0) && p.Limits.TimestampPeriod > 0;

        string name = Utf8(p.DeviceName, 256);
        string driverName = Utf8(driver.DriverName, 256);
        var uuid = new ReadOnlySpan<byte>(p.PipelineCacheUuid, 16);
        return new DeviceCapabilities
        {
            Index = index,
            Name = name,
            Vendor = VendorName(p.VendorID),
            VendorId = p.VendorID,
            DeviceType = p.DeviceType switch
            {
                PhysicalDeviceType.DiscreteGpu => "discrete",
                PhysicalDeviceType.IntegratedGpu => "integrated",
                PhysicalDeviceType.VirtualGpu => "virtual",
                PhysicalDeviceType.Cpu => "cpu",
                _ => "other",
            },
            DriverName = driverName.Length > 0 ? driverName : "unknown",
            DriverInfo = Utf8(driver.DriverInfo, 256),
            DriverVersion = DecodeDriverVersion(p.VendorID, p.DriverVersion),
            ApiVersion = $"{p.ApiVersion >> 22}.{(p.ApiVersion >> 12) & 0x3ff}.{p.ApiVersion & 0xfff}",
            SubgroupSize = subgroup.SubgroupSize,
            ShaderFloat16 = f16.ShaderFloat16,
            StorageBuffer16Bit = s16.StorageBuffer16BitAccess,
            ShaderInt8 = f16.ShaderInt8,
            BFloat16 = bf16Listed,
            CooperativeMatrixKhr = khrCoopmat && khrFeatures.CooperativeMatrix && coopmatBasics && khrFragment is not null && sizeControlUsable,
            CooperativeMatrixFragment = khrFragment ?? MatrixFragment.Whole,
            CooperativeMatrixBf16 = khrCoopmat && khrFeatures.CooperativeMatrix && coopmatBasics && khrFragment is { } f && sizeControlUsable
                                    && bf16Listed && bf16.ShaderBFloat16Type && bf16.ShaderBFloat16CooperativeMatrix
                                    && khrShapes.Contains(CoopmatShapeBf16 with { M = f.M, N = f.N, K = f.K }),
            CooperativeMatrixNv = nvCoopmat && nvFeatures.CooperativeMatrix && coopmatBasics && nvShapes.Contains(CoopmatShape),
            CooperativeMatrixShapes = (khrCoopmat ? khrShapes : nvShapes).Select(s => s.Text).ToList(),
            CooperativeMatrix2Nv = coopmat2.Usable && khrFeatures.CooperativeMatrix && coopmatBasics && khrShapes.Contains(CoopmatShape) && p.ApiVersion >= Vk.Version13,
            CooperativeMatrix2Shapes = coopmat2.Shapes ?? [],
            CooperativeMatrix2MaxDimension = coopmat2.MaxDimension,
            PipelineExecutableStatistics = executableInfo.PipelineExecutableInfo,
            SubgroupSizeControl = sizeControlUsable,
            MaxComputeWorkgroupSubgroups = sizeControlListed ? sizeControl.MaxComputeWorkgroupSubgroups : 0,
            MaxSubgroupSize = sizeControlListed ? sizeControl.MaxSubgroupSize : subgroup.SubgroupSize,
            MemoryBudget = extensions.Contains(MemoryBudgetExtension),
            PortabilitySubset = portabilitySubset,
            PortabilitySubsetUnsupported = portabilitySubset ? PortabilitySubsetGaps(portability) : [],
            MaxStorageBufferRange = p.Limits.MaxStorageBufferRange,
            MaxMemoryAllocationSize = (long)maint3.MaxMemoryAllocationSize,
            MaxComputeSharedMemorySize = p.Limits.MaxComputeSharedMemorySize,
            MaxComputeWorkGroupInvocations = p.Limits.MaxComputeWorkGroupInvocations,
            MaxPushConstantsSize = p.Limits.MaxPushConstantsSize,
            MaxWorkGroupCountX = p.Limits.MaxComputeWorkGroupCount[0],
            MaxWorkGroupCountY = p.Limits.MaxComputeWorkGroupCount[1],
            MaxWorkGroupCountZ = p.Limits.MaxComputeWorkGroupCount[2],
            TimestampsSupported = timestamps,
            TimestampPeriodNs = p.Limits.TimestampPeriod,
            Heaps = heaps,
            PipelineCacheKey = $"{Convert.ToHexString(uuid).ToLowerInvariant()}-{p.DriverVersion:x8}",
        };
    }

    internal const string NvCooperativeMatrixExtension = "VK_NV_cooperative_matrix";
    internal const string KhrCooperativeMatrixExtension = "VK_KHR_cooperative_matrix";
    internal const string NvCooperativeMatrix2Extension = "VK_NV_cooperative_matrix2";
    internal const string ShaderBfloat16Extension = "VK_KHR_shader_bfloat16";
    internal const string PipelineExecutablePropertiesExtension = "VK_KHR_pipeline_executable_properties";
    internal const string SubgroupSizeControlExtension = "VK_EXT_subgroup_size_control";
    internal const string MemoryBudgetExtension = "VK_EXT_memory_budget";
    internal const string PortabilitySubsetExtension = "VK_KHR_portability_subset";

    /// <summary>The features <paramref name="f"/> reports missing, by their Vulkan names.</summary>
    internal static List<string> PortabilitySubsetGaps(PhysicalDevicePortabilitySubsetFeaturesKHR f) =>
        new (string Name, bool Supported)[]
        {
            ("constantAlphaColorBlendFactors", f.ConstantAlphaColorBlendFactors), ("events", f.Events),
            ("imageViewFormatReinterpretation", f.ImageViewFormatReinterpretation), ("imageViewFormatSwizzle", f.ImageViewFormatSwizzle),
            ("imageView2DOn3DImage", f.ImageView2DOn3DImage), ("multisampleArrayImage", f.MultisampleArrayImage),
            ("mutableComparisonSamplers", f.MutableComparisonSamplers), ("pointPolygons", f.PointPolygons),
            ("samplerMipLodBias", f.SamplerMipLodBias), ("separateStencilMaskRef", f.SeparateStencilMaskRef),
            ("shaderSampleRateInterpolationFunctions", f.ShaderSampleRateInterpolationFunctions),
            ("tessellationIsolines", f.TessellationIsolines), ("tessellationPointMode", f.TessellationPointMode),
            ("triangleFans", f.TriangleFans), ("vertexAttributeAccessBeyondStride", f.VertexAttributeAccessBeyondStride),
        }.Where(feature => !feature.Supported).Select(feature => feature.Name).ToList();

    readonly record struct CoopmatEntry(uint M, uint N, uint K, ComponentTypeKHR A, ComponentTypeKHR B, ComponentTypeKHR C, ComponentTypeKHR D, bool Subgroup)
    {
        public MatrixFragment Shape => new(M, N, K);
        /// <summary>The same component types as <paramref name="other"/>, whatever the shape.</summary>
        public bool Is(CoopmatEntry other) => (A, B, C, D) == (other.A, other.B, other.C, other.D);
        public string Text => $"{M}x{N}x{K} {Short(A)}·{Short(B)}+{Short(C)}→{Short(D)}{(Subgroup ? "" : " (not subgroup scope)")}";
        static string Short(ComponentTypeKHR t) => t switch
        {
            ComponentTypeKHR.Float16Khr => "f16",
            ComponentTypeKHR.Float32Khr => "f32",
            ComponentTypeKHR.Float64Khr => "f64",
            ComponentTypeKHR.Sint8Khr => "s8",
            ComponentTypeKHR.Uint8Khr => "u8",
            ComponentTypeKHR.Sint32Khr => "s32",
            ComponentTypeKHR.Uint32Khr => "u32",
            ComponentTypeKHR.Bfloat16Khr => "bf16",
            _ => $"type{(int)t}",
        };
    }

    // The shape the matrix-unit products are written for, with fp16 fragments or bf16 ones (the
    // KHR kernels compose it of smaller listed shapes: CooperativeMatrixFragment).
    static readonly CoopmatEntry CoopmatShape = new(16, 16, 16, ComponentTypeKHR.Float16Khr, ComponentTypeKHR.Float16Khr,
                                                    ComponentTypeKHR.Float32Khr, ComponentTypeKHR.Float32Khr, true);
    static readonly CoopmatEntry CoopmatShapeBf16 = CoopmatShape with { A = ComponentTypeKHR.Bfloat16Khr, B = ComponentTypeKHR.Bfloat16Khr };

    // Silk.NET.Vulkan binds these extensions' commands in separate packages that are not served
    // here; the one query each needs is called through its function pointer instead. The two
    // extensions' property structures hold the same facts under different types.
    static List<CoopmatEntry> NvShapes(Vk vk, Instance instance, PhysicalDevice pd) =>
        ShapesOf(vk, instance, pd, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV",
            new CooperativeMatrixPropertiesNV { SType = StructureType.CooperativeMatrixPropertiesNV },
            p => new CoopmatEntry(p.MSize, p.NSize, p.KSize, (ComponentTypeKHR)p.AType, (ComponentTypeKHR)p.BType, (ComponentTypeKHR)p.CType,
                     (ComponentTypeKHR)p.DType, (ScopeKHR)p.Scope == ScopeKHR.SubgroupKhr));

    static List<CoopmatEntry> KhrShapes(Vk vk, Instance instance, PhysicalDevice pd) =>
        ShapesOf(vk, instance, pd, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR",
            new CooperativeMatrixPropertiesKHR { SType = StructureType.CooperativeMatrixPropertiesKhr },
            p => new CoopmatEntry(p.MSize, p.NSize, p.KSize, p.AType, p.BType, p.CType, p.ResultType, p.Scope == ScopeKHR.SubgroupKhr));

    static unsafe List<TEntry> ShapesOf<T, TEntry>(Vk vk, Instance instance, PhysicalDevice pd, string function, T empty, Func<T, TEntry> entry)
        where T : unmanaged
    {
        using var name = new ScopedUtf8(function);
        var fn = (delegate* unmanaged[Cdecl]<PhysicalDevice, uint*, T*, Result>)vk.GetInstanceProcAddr(instance, name.Ptr).Handle;
        if (fn == null) return [];
        uint count = 0;
        if (fn(pd, &count, null) != Result.Success || count == 0) return [];
        var props = Enumerable.Repeat(empty, (int)count).ToArray();
        fixed (T* p = props)
            if (fn(pd, &count, p) != Result.Success) return [];
        return props.Take((int)count).Select(entry).ToList();
    }

    /// <summary>VK_NV_cooperative_matrix2's features (the three matmul_coopmat_nv2.comp uses),
    /// its largest dimension and its fp16·fp16+fp32 workgroup-scope shapes.</summary>
    static unsafe (bool Usable, IReadOnlyList<CoopMat2Shape>? Shapes, uint MaxDimension) Coopmat2(Vk vk, Instance instance, PhysicalDevice pd)
    {
        var features = new PhysicalDeviceCooperativeMatrix2FeaturesNV { SType = StructureType.PhysicalDeviceCooperativeMatrix2FeaturesNV };
        var feats2 = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = &features };
        vk.GetPhysicalDeviceFeatures2(pd, &feats2);
        var props = new PhysicalDeviceCooperativeMatrix2PropertiesNV { SType = StructureType.PhysicalDeviceCooperativeMatrix2PropertiesNV };
        var props2 = new PhysicalDeviceProperties2 { SType = StructureType.PhysicalDeviceProperties2, PNext = &props };
        vk.GetPhysicalDeviceProperties2(pd, &props2);
        uint maxInvocations = props.CooperativeMatrixWorkgroupScopeMaxWorkgroupSize;
        var shapes = ShapesOf(vk, instance, pd, "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV",
                new CooperativeMatrixFlexibleDimensionsPropertiesNV { SType = StructureType.CooperativeMatrixFlexibleDimensionsPropertiesNV }, p => p)
            .Where(p => p.Scope == ScopeKHR.WorkgroupKhr && !p.SaturatingAccumulation
                        && p.AType == ComponentTypeKHR.Float16Khr && p.BType == ComponentTypeKHR.Float16Khr
                        && p.CType == ComponentTypeKHR.Float32Khr && p.ResultType == ComponentTypeKHR.Float32Khr
                        && p.WorkgroupInvocations <= maxInvocations)
            .Select(p => new CoopMat2Shape(p.WorkgroupInvocations, p.MGranularity, p.NGranularity, p.KGranularity))
            .Distinct().ToList();
        bool usable = features.CooperativeMatrixWorkgroupScope && features.CooperativeMatrixFlexibleDimensions && features.CooperativeMatrixTensorAddressing && shapes.Count > 0;
        return (usable, shapes, props.CooperativeMatrixFlexibleDimensionsMaxDimension);
    }

    static unsafe string Utf8(byte* s, int max)
    {
        var span = new ReadOnlySpan<byte>(s, max);
        int n = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(n < 0 ? span : span[..n]);
    }

    static string VendorName(uint id) => id switch
    {
        0x10DE => "NVIDIA",
        0x1002 => "AMD",
        0x8086 => "Intel",
        0x13B5 => "ARM",
        0x5143 => "Qualcomm",
        0x106B => "Apple",
        0x10005 => "Mesa",
        _ => $"0x{id:X4}",
    };

    // Vendors pack driverVersion differently; this follows the scheme vulkaninfo and gpuinfo.org use.
    static string DecodeDriverVersion(uint vendor, uint v) => vendor switch
    {
        0x10DE => $"{v >> 22}.{(v >> 14) & 0xff}.{(v >> 6) & 0xff}.{v & 0x3f}",
        0x8086 when OperatingSystem.IsWindows() => $"{v >> 14}.{v & 0x3fff}",
        _ => $"{v >> 22}.{(v >> 12) & 0x3ff}.{v & 0xfff}",
    };
}
