using System.Reflection;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

internal enum Access { Read, Write, ReadWrite }

/// <summary>The interface of a shader: how each binding is accessed (the command graph derives
/// barriers from it), how many bytes of push constants it takes, and which bindings may hold
/// 16-bit activations (<see cref="HalfBindings"/>).</summary>
internal sealed record KernelLayout(Access[] Bindings, int PushConstantBytes)
{
    /// <summary>Bit i set: binding i may be a buffer of 16-bit activations
    /// (<see cref="GpuBuffer.Storage"/>), which the kernel then reads or writes as such, told by a
    /// specialization constant; the command graph refuses one anywhere else, since a kernel
    /// reading halves as floats computes garbage without any error.</summary>
    public uint HalfBindings { get; init; }

    public bool Equals(KernelLayout? other) =>
        other is not null && PushConstantBytes == other.PushConstantBytes && HalfBindings == other.HalfBindings && Bindings.AsSpan().SequenceEqual(other.Bindings);

    public override int GetHashCode() => HashCode.Combine(Bindings.Length, PushConstantBytes, HalfBindings);
}

/// <summary>
/// A compute pipeline built from an embedded SPIR-V module (shaders/NAME.comp) with integer
/// specialization constants: constant_id i receives specialization[i]. By convention
/// constant_id 0 is local_size_x, so each device gets its own workgroup and tile shape.
/// </summary>
internal sealed unsafe class Kernel : IDisposable
{
    readonly GpuContext ctx;
    public string Name { get; }
    public KernelLayout Layout { get; }
    internal DescriptorSetLayout SetLayout { get; }
    internal PipelineLayout PipelineLayout { get; }
    internal Pipeline Pipeline { get; }

    /// <summary>The specialization constants it was built with (constant_id i: element i).</summary>
    public IReadOnlyList<int> Specialization { get; }

    /// <summary>The specialization constants it was built with at ids of their own (the matrix
    /// units' fragment shape: <see cref="GpuContext.MatrixUnitsKernel"/>).</summary>
    public IReadOnlyList<(uint Id, int Value)> Placed { get; }

    /// <summary>What the driver compiled the pipeline into, as it names and counts it (NVIDIA:
    /// registers per invocation, shared memory; Mesa's drivers: registers, spills, code size), one
    /// row per statistic of each executable; empty unless <see cref="GpuContext.PipelineStatistics"/>.</summary>
    public IReadOnlyList<PipelineStatistic> Statistics { get; } = [];

    /// <summary>The subgroup size the pipeline runs in full subgroups of
    /// (VkPipelineShaderStageRequiredSubgroupSizeCreateInfo with REQUIRE_FULL_SUBGROUPS); 0: the
    /// driver's choice.</summary>
    public uint RequiredSubgroupSize { get; }

    /// <summary>The pipeline runs in full subgroups (REQUIRE_FULL_SUBGROUPS): of <see cref="RequiredSubgroupSize"/>
    /// where one is required, else of the driver's size, the workgroup then a multiple of the
    /// largest it may choose. A pipeline with VK_KHR_cooperative_matrix's instructions in SPIR-V
    /// before 1.6, as the KHR kernels are, must be so created (VUID-RuntimeSpirv-OpTypeCooperativeMatrixKHR-10770).</summary>
    public bool FullSubgroups { get; }

    /// <summary>Whether a pipeline asked for with <paramref name="fullSubgroups"/> and
    /// <paramref name="requiredSubgroupSize"/> runs in full subgroups (<see cref="FullSubgroups"/>):
    /// a required size implies them, so both requests are one pipeline (and one cache entry:
    /// <see cref="GpuContext.PinnedKernel"/>).</summary>
    internal static bool RunsInFullSubgroups(bool fullSubgroups, uint requiredSubgroupSize) => fullSubgroups || requiredSubgroupSize != 0;

    /// <summary>Builds shaders/<paramref name="name"/>.comp's pipeline on <paramref name="ctx"/>'s device
    /// with <paramref name="layout"/> and <paramref name="specialization"/>, and
    /// <paramref name="requiredSubgroupSize"/> (<see cref="RequiredSubgroupSize"/>; needs
    /// <see cref="DeviceCapabilities.SubgroupSizeControl"/>, with local_size_x, constant_id 0, a multiple of it),
    /// in full subgroups where <paramref name="fullSubgroups"/> (<see cref="FullSubgroups"/>), and
    /// <paramref name="placed"/> constants at their own ids (past the positional ones).</summary>
    internal Kernel(GpuContext ctx, string name, KernelLayout layout, int[] specialization, uint requiredSubgroupSize = 0,
                    (uint Id, int Value)[]? placed = null, bool fullSubgroups = false)
    {
        placed ??= [];
        if (placed.Any(p => p.Id < specialization.Length))
            throw new ArgumentException($"{name}: a placed specialization constant's id is among the {specialization.Length} positional ones", nameof(placed));
        if (placed.Select(p => p.Id).Distinct().Count() != placed.Length)
            throw new ArgumentException($"{name}: two placed specialization constants share an id", nameof(placed));
        this.ctx = ctx;
        Name = name;
        Layout = layout;
        Specialization = specialization.ToArray();
        Placed = placed.ToArray();
        RequiredSubgroupSize = requiredSubgroupSize;
        FullSubgroups = RunsInFullSubgroups(fullSubgroups, requiredSubgroupSize);
        var vk = ctx.Vk;
        if (layout.PushConstantBytes > ctx.Capabilities.MaxPushConstantsSize)
            throw new GpuException($"{name}: {layout.PushConstantBytes} bytes of push constants exceed the device's {ctx.Capabilities.MaxPushConstantsSize}");
        if (requiredSubgroupSize != 0 && !ctx.Capabilities.SubgroupSizeControl)
            throw new GpuException($"{name}: a subgroup size of {requiredSubgroupSize} was required, but {ctx.Capabilities.Described} cannot pin one (VK_EXT_subgroup_size_control)");
        // A pinned workgroup may hold at most maxComputeWorkgroupSubgroups subgroups (its size is constant_id 0).
        if (requiredSubgroupSize != 0 && specialization.Length > 0 && (long)specialization[0] > (long)requiredSubgroupSize * ctx.Capabilities.MaxComputeWorkgroupSubgroups)
            throw new GpuException($"{name}: a workgroup of {specialization[0]} invocations is more than the {ctx.Capabilities.MaxComputeWorkgroupSubgroups} subgroups of " +
                                   $"{requiredSubgroupSize} {ctx.Capabilities.Described} allows a pinned pipeline (maxComputeWorkgroupSubgroups); choose a tiling with fewer warps");
        if (FullSubgroups && !ctx.Capabilities.SubgroupSizeControl)
            throw new GpuException($"{name}: full subgroups were required, but {ctx.Capabilities.Described} cannot guarantee them (VK_EXT_subgroup_size_control's computeFullSubgroups)");
        // Full subgroups of the driver's size: the workgroup must hold whole subgroups of any size it
        // may choose (VUID-VkPipelineShaderStageCreateInfo-flags-02759 asks no more; SPIR-V 1.5
        // kernels run at the reported size, so this is stricter than some drivers need, never less).
        uint largest = Math.Max(ctx.Capabilities.MaxSubgroupSize, ctx.Capabilities.SubgroupSize);
        if (FullSubgroups && requiredSubgroupSize == 0 && specialization.Length > 0 && specialization[0] % largest != 0)
            throw new GpuException($"{name}: a workgroup of {specialization[0]} invocations in full subgroups of the driver's size must be a multiple of " +
                                   $"the largest, {largest} on {ctx.Capabilities.Described}; pin the subgroup size (it is off: {ctx.Options.Describe(nameof(GpuOptions.MatrixUnitsPinSubgroups), ctx.Options.MatrixUnitsPinSubgroups)}) or choose another tiling");

        byte[] spirv = LoadSpirv(name);
        ShaderModule module;
        fixed (byte* code = spirv)
        {
            var info = new ShaderModuleCreateInfo { SType = StructureType.ShaderModuleCreateInfo, CodeSize = (nuint)spirv.Length, PCode = (uint*)code };
            GpuException.Check(vk.CreateShaderModule(ctx.Device, &info, null, out module), $"vkCreateShaderModule({name})");
        }
        try
        {
            var bindings = stackalloc DescriptorSetLayoutBinding[layout.Bindings.Length];
            for (int i = 0; i < layout.Bindings.Length; i++)
                bindings[i] = new DescriptorSetLayoutBinding((uint)i, DescriptorType.StorageBuffer, 1, ShaderStageFlags.ComputeBit);
            var setInfo = new DescriptorSetLayoutCreateInfo
            {
                SType = StructureType.DescriptorSetLayoutCreateInfo,
                BindingCount = (uint)layout.Bindings.Length,
                PBindings = bindings,
            };
            GpuException.Check(vk.CreateDescriptorSetLayout(ctx.Device, &setInfo, null, out var setLayout), "vkCreateDescriptorSetLayout");
            SetLayout = setLayout;

            var range = new PushConstantRange(ShaderStageFlags.ComputeBit, 0, (uint)layout.PushConstantBytes);
            var plInfo = new PipelineLayoutCreateInfo
            {
                SType = StructureType.PipelineLayoutCreateInfo,
                SetLayoutCount = 1,
                PSetLayouts = &setLayout,
                PushConstantRangeCount = layout.PushConstantBytes > 0 ? 1u : 0u,
                PPushConstantRanges = &range,
            };
            GpuException.Check(vk.CreatePipelineLayout(ctx.Device, &plInfo, null, out var pipelineLayout), "vkCreatePipelineLayout");
            PipelineLayout = pipelineLayout;

            int[] values = [.. specialization, .. placed.Select(p => p.Value)];
            var entries = stackalloc SpecializationMapEntry[Math.Max(1, values.Length)];
            for (int i = 0; i < values.Length; i++)
                entries[i] = new SpecializationMapEntry(i < specialization.Length ? (uint)i : placed[i - specialization.Length].Id, (uint)(i * 4), 4);
            using var entryName = new ScopedUtf8("main");
            fixed (int* specData = values)
            {
                var spec = new SpecializationInfo
                {
                    MapEntryCount = (uint)values.Length,
                    PMapEntries = entries,
                    DataSize = (nuint)(values.Length * 4),
                    PData = specData,
                };
                var subgroupSize = new PipelineShaderStageRequiredSubgroupSizeCreateInfo
                {
                    SType = StructureType.PipelineShaderStageRequiredSubgroupSizeCreateInfo,
                    RequiredSubgroupSize = requiredSubgroupSize,
                };
                var stage = new PipelineShaderStageCreateInfo
                {
                    SType = StructureType.PipelineShaderStageCreateInfo,
                    PNext = requiredSubgroupSize != 0 ? &subgroupSize : null,
                    Flags = FullSubgroups ? PipelineShaderStageCreateFlags.RequireFullSubgroupsBit : 0,
                    Stage = ShaderStageFlags.ComputeBit,
                    Module = module,
                    PName = entryName.Ptr,
                    PSpecializationInfo = values.Length > 0 ? &spec : null,
                };
                var pInfo = new ComputePipelineCreateInfo
                {
                    SType = StructureType.ComputePipelineCreateInfo,
                    Stage = stage,
                    Layout = pipelineLayout,
                    Flags = ctx.PipelineStatistics ? PipelineCreateFlags.CreateCaptureStatisticsBitKhr : 0,
                };
                GpuException.Check(vk.CreateComputePipelines(ctx.Device, ctx.PipelineCache, 1, &pInfo, null, out var pipeline), $"vkCreateComputePipelines({name})");
                Pipeline = pipeline;
                if (ctx.PipelineStatistics) Statistics = QueryStatistics(ctx, pipeline);
            }
        }
        catch
        {
            // What was made before the failure (a driver that cannot compile the pipeline);
            // destroying a null handle is a no-op.
            Dispose();
            throw;
        }
        finally { vk.DestroyShaderModule(ctx.Device, module, null); }
    }

    static List<PipelineStatistic> QueryStatistics(GpuContext ctx, Pipeline pipeline)
    {
        var vk = ctx.Vk;
        using var propertiesName = new ScopedUtf8("vkGetPipelineExecutablePropertiesKHR");
        using var statisticsName = new ScopedUtf8("vkGetPipelineExecutableStatisticsKHR");
        var getProperties = (delegate* unmanaged[Cdecl]<Device, PipelineInfoKHR*, uint*, PipelineExecutablePropertiesKHR*, Result>)vk.GetDeviceProcAddr(ctx.Device, propertiesName.Ptr).Handle;
        var getStatistics = (delegate* unmanaged[Cdecl]<Device, PipelineExecutableInfoKHR*, uint*, PipelineExecutableStatisticKHR*, Result>)vk.GetDeviceProcAddr(ctx.Device, statisticsName.Ptr).Handle;
        var rows = new List<PipelineStatistic>();
        if (getProperties == null || getStatistics == null) return rows;
        var pipelineInfo = new PipelineInfoKHR { SType = StructureType.PipelineInfoKhr, Pipeline = pipeline };
        uint executables = 0;
        GpuException.Check(getProperties(ctx.Device, &pipelineInfo, &executables, null), "vkGetPipelineExecutablePropertiesKHR");
        var properties = new PipelineExecutablePropertiesKHR[executables];
        for (int i = 0; i < properties.Length; i++) properties[i].SType = StructureType.PipelineExecutablePropertiesKhr;
        fixed (PipelineExecutablePropertiesKHR* p = properties)
            GpuException.Check(getProperties(ctx.Device, &pipelineInfo, &executables, p), "vkGetPipelineExecutablePropertiesKHR");
        for (uint e = 0; e < executables; e++)
        {
            string executable;
            fixed (byte* n = properties[e].Name) executable = Silk.NET.Core.Native.SilkMarshal.PtrToString((nint)n) ?? "";
            var info = new PipelineExecutableInfoKHR { SType = StructureType.PipelineExecutableInfoKhr, Pipeline = pipeline, ExecutableIndex = e };
            uint count = 0;
            GpuException.Check(getStatistics(ctx.Device, &info, &count, null), "vkGetPipelineExecutableStatisticsKHR");
            var stats = new PipelineExecutableStatisticKHR[count];
            for (int i = 0; i < stats.Length; i++) stats[i].SType = StructureType.PipelineExecutableStatisticKhr;
            fixed (PipelineExecutableStatisticKHR* st = stats)
                GpuException.Check(getStatistics(ctx.Device, &info, &count, st), "vkGetPipelineExecutableStatisticsKHR");
            foreach (var st in stats)
            {
                var v = st.Value;
                double value = st.Format switch
                {
                    PipelineExecutableStatisticFormatKHR.Bool32Khr => v.B32 ? 1 : 0,
                    PipelineExecutableStatisticFormatKHR.Int64Khr => v.I64,
                    PipelineExecutableStatisticFormatKHR.Uint64Khr => v.U64,
                    _ => v.F64,
                };
                rows.Add(new PipelineStatistic(executable, Silk.NET.Core.Native.SilkMarshal.PtrToString((nint)st.Name) ?? "", value));
            }
        }
        return rows;
    }

    /// <summary>Whether the build embedded shaders/<paramref name="name"/>.comp (a shader whose
    /// extension the build's glslc lacks is left out).</summary>
    internal static bool IsEmbedded(string name) => typeof(Kernel).Assembly.GetManifestResourceInfo(name + ".spv") is not null;

    static byte[] LoadSpirv(string name)
    {
        using var s = typeof(Kernel).Assembly.GetManifestResourceStream(name + ".spv")
            ?? throw new GpuException($"shader '{name}' is not embedded; is shaders/{name}.comp missing?");
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return bytes;
    }

    public void Dispose()
    {
        ctx.Vk.DestroyPipeline(ctx.Device, Pipeline, null);
        ctx.Vk.DestroyPipelineLayout(ctx.Device, PipelineLayout, null);
        ctx.Vk.DestroyDescriptorSetLayout(ctx.Device, SetLayout, null);
    }
}

/// <summary>One statistic the driver reported for one executable of a pipeline (its names: NVIDIA
/// calls the compute one "Compute Shader"), e.g. ("Compute Shader", "Register Count", 128).</summary>
internal sealed record PipelineStatistic(string Executable, string Name, double Value);
