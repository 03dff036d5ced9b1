using System.Reflection;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

public enum Access { Read, Write, ReadWrite }

/// <summary>The interface of a shader: how each binding is accessed (the command graph derives
/// barriers from it) and how many bytes of push constants it takes.</summary>
public sealed record KernelLayout(Access[] Bindings, int PushConstantBytes)
{
    public bool Equals(KernelLayout? other) =>
        other is not null && PushConstantBytes == other.PushConstantBytes && Bindings.AsSpan().SequenceEqual(other.Bindings);

    public override int GetHashCode() => HashCode.Combine(Bindings.Length, PushConstantBytes);
}

/// <summary>
/// A compute pipeline built from an embedded SPIR-V module (shaders/NAME.comp) with integer
/// specialization constants: constant_id i receives specialization[i]. By convention
/// constant_id 0 is local_size_x, so each device gets its own workgroup and tile shape.
/// </summary>
public sealed unsafe class Kernel : IDisposable
{
    readonly GpuContext ctx;
    public string Name { get; }
    public KernelLayout Layout { get; }
    internal DescriptorSetLayout SetLayout { get; }
    internal PipelineLayout PipelineLayout { get; }
    internal Pipeline Pipeline { get; }

    internal Kernel(GpuContext ctx, string name, KernelLayout layout, int[] specialization)
    {
        this.ctx = ctx;
        Name = name;
        Layout = layout;
        var vk = ctx.Vk;
        if (layout.PushConstantBytes > ctx.Capabilities.MaxPushConstantsSize)
            throw new GpuException($"{name}: {layout.PushConstantBytes} bytes of push constants exceed the device's {ctx.Capabilities.MaxPushConstantsSize}");

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

            var entries = stackalloc SpecializationMapEntry[Math.Max(1, specialization.Length)];
            for (int i = 0; i < specialization.Length; i++)
                entries[i] = new SpecializationMapEntry((uint)i, (uint)(i * 4), 4);
            using var entryName = new Utf8Name("main");
            fixed (int* specData = specialization)
            {
                var spec = new SpecializationInfo
                {
                    MapEntryCount = (uint)specialization.Length,
                    PMapEntries = entries,
                    DataSize = (nuint)(specialization.Length * 4),
                    PData = specData,
                };
                var stage = new PipelineShaderStageCreateInfo
                {
                    SType = StructureType.PipelineShaderStageCreateInfo,
                    Stage = ShaderStageFlags.ComputeBit,
                    Module = module,
                    PName = entryName.Ptr,
                    PSpecializationInfo = specialization.Length > 0 ? &spec : null,
                };
                var pInfo = new ComputePipelineCreateInfo
                {
                    SType = StructureType.ComputePipelineCreateInfo,
                    Stage = stage,
                    Layout = pipelineLayout,
                };
                GpuException.Check(vk.CreateComputePipelines(ctx.Device, ctx.PipelineCache, 1, &pInfo, null, out var pipeline), $"vkCreateComputePipelines({name})");
                Pipeline = pipeline;
            }
        }
        finally { vk.DestroyShaderModule(ctx.Device, module, null); }
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

    readonly struct Utf8Name : IDisposable
    {
        public readonly byte* Ptr;
        public Utf8Name(string s) => Ptr = (byte*)Silk.NET.Core.Native.SilkMarshal.StringToPtr(s);
        public void Dispose() => Silk.NET.Core.Native.SilkMarshal.Free((nint)Ptr);
    }
}
