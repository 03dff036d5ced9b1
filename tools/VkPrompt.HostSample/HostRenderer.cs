using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace VkPrompt.HostSample;

/// <summary>
/// What an engine owns, written without VkPrompt: a Vulkan 1.2 instance (with the validation
/// layer when asked), a device with timeline semaphores enabled and one queue, and a stand-in
/// frame: a compute pass that shades a width x height RGBA8 image into a storage buffer and a
/// copy of it to a second buffer (as a renderer copies to its swapchain image), submitted with
/// the host's own fence under the host's own queue lock.
/// </summary>
internal sealed unsafe class HostRenderer : IDisposable
{
    const uint Width = 1920, Height = 1080, LocalSize = 16;
    const ulong ImageBytes = (ulong)Width * Height * 4;

    readonly Vk vk = Vk.GetApi();
    readonly Instance instance;
    readonly DebugUtilsMessengerEXT messenger;
    readonly PhysicalDevice physicalDevice;
    readonly Device device;
    readonly Queue queue;
    readonly uint family;
    readonly HostFeatures enabledFeatures;
    readonly GCHandle errorsHandle;
    readonly List<string> validationErrors = [];
    readonly object queueLock = new();
    readonly uint rounds;
    Buffer image, presented;
    DeviceMemory imageMemory, presentedMemory;
    DescriptorSetLayout setLayout;
    PipelineLayout pipelineLayout;
    Pipeline pipeline;
    DescriptorPool descriptorPool;
    DescriptorSet descriptorSet;
    CommandPool commandPool;
    CommandBuffer commandBuffer;
    Fence fence;
    uint frame;
    bool disposed;

    /// <summary>The physical device's name, as the host reports it.</summary>
    public string DeviceName { get; }

    /// <summary>Validation errors reported so far (only with the layer on).</summary>
    public IReadOnlyList<string> ValidationErrors { get { lock (validationErrors) return validationErrors.ToList(); } }

    /// <summary>How many times the library took the host's queue lock (once per vkQueueSubmit of its own).</summary>
    public int LibrarySubmits { get; private set; }

    /// <param name="validation">Enable VK_LAYER_KHRONOS_validation and count its errors.</param>
    /// <param name="rounds">Shading rounds per pixel: the frame's GPU cost.</param>
    public HostRenderer(bool validation, uint rounds)
    {
        this.rounds = rounds;
        errorsHandle = GCHandle.Alloc(validationErrors);
        try
        {
            var messengerInfo = MessengerInfo(errorsHandle);
            instance = CreateInstance(validation ? &messengerInfo : null);
            if (validation) messenger = CreateMessenger(&messengerInfo);
            physicalDevice = ChoosePhysicalDevice(out var name);
            DeviceName = name;
            family = ComputeFamily();
            device = CreateDevice(out enabledFeatures);
            vk.GetDeviceQueue(device, family, 0, out queue);
            CreateFrameResources();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The device as the host declares it to <see cref="GpuContext.Adopt"/>: exactly what
    /// <see cref="CreateDevice"/> enabled, and the lock this host takes around its own submits,
    /// so the library's submits from any thread never race the host's.</summary>
    public HostDevice Declared() => new()
    {
        GetInstanceProcAddr = vk.Context.GetProcAddress("vkGetInstanceProcAddr"),
        Instance = instance,
        PhysicalDevice = physicalDevice,
        Device = device,
        ApiVersion = Vk.Version12,
        QueueFamily = family,
        QueueIndex = 0,
        EnabledFeatures = enabledFeatures,
        QueueLock = new QueueLock(() => { Monitor.Enter(queueLock); LibrarySubmits++; }, () => Monitor.Exit(queueLock)),
    };

    /// <summary>Renders one frame: records the shading pass and the copy, submits them under the
    /// queue lock with the host's fence, and waits for the fence. Returns the milliseconds from
    /// the submit (lock wait included) to the fence: what the frame took on a queue it may share
    /// with the library's slices.</summary>
    public double Render()
    {
        Record(frame++);
        var cb = commandBuffer;
        var submit = new SubmitInfo { SType = StructureType.SubmitInfo, CommandBufferCount = 1, PCommandBuffers = &cb };
        long start = Stopwatch.GetTimestamp();
        lock (queueLock) Check(vk.QueueSubmit(queue, 1, &submit, fence), "vkQueueSubmit");
        var f = fence;
        Check(vk.WaitForFences(device, 1, &f, true, ulong.MaxValue), "vkWaitForFences");
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        Check(vk.ResetFences(device, 1, &f), "vkResetFences");
        return ms;
    }

    /// <summary>Copies <paramref name="source"/> (a buffer of the library's) into host memory with
    /// the host's own submit, which waits on the GPU for <paramref name="after"/> (a ticket of the
    /// library's, as a wait-list entry) and has its own fence: the host never blocks on the
    /// library, only on its own fence, and the copy cannot start before the work it reads is done.</summary>
    public float[] CopyOut(GpuBufferRange source, GpuWait? after)
    {
        var (buffer, memory) = CreateBuffer(source.Bytes, BufferUsageFlags.TransferDstBit, MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit);
        var alloc = new CommandBufferAllocateInfo { SType = StructureType.CommandBufferAllocateInfo, CommandPool = commandPool, Level = CommandBufferLevel.Primary, CommandBufferCount = 1 };
        Check(vk.AllocateCommandBuffers(device, &alloc, out var cb), "vkAllocateCommandBuffers");
        var fenceInfo = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
        Check(vk.CreateFence(device, &fenceInfo, null, out var copied), "vkCreateFence");
        try
        {
            var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
            Check(vk.BeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer");
            var region = new BufferCopy(source.Offset, 0, source.Bytes);
            vk.CmdCopyBuffer(cb, source.Buffer, buffer, 1, &region);
            var barrier = new MemoryBarrier { SType = StructureType.MemoryBarrier, SrcAccessMask = AccessFlags.TransferWriteBit, DstAccessMask = AccessFlags.HostReadBit };
            vk.CmdPipelineBarrier(cb, PipelineStageFlags.TransferBit, PipelineStageFlags.HostBit, 0, 1, &barrier, 0, null, 0, null);
            Check(vk.EndCommandBuffer(cb), "vkEndCommandBuffer");

            var semaphore = after?.Semaphore ?? default;
            ulong value = after?.Value ?? 0;
            var stage = PipelineStageFlags.TransferBit;
            var timeline = new TimelineSemaphoreSubmitInfo { SType = StructureType.TimelineSemaphoreSubmitInfo, WaitSemaphoreValueCount = after is null ? 0u : 1, PWaitSemaphoreValues = &value };
            var submit = new SubmitInfo
            {
                SType = StructureType.SubmitInfo, PNext = &timeline, CommandBufferCount = 1, PCommandBuffers = &cb,
                WaitSemaphoreCount = after is null ? 0u : 1, PWaitSemaphores = &semaphore, PWaitDstStageMask = &stage,
            };
            lock (queueLock) Check(vk.QueueSubmit(queue, 1, &submit, copied), "vkQueueSubmit");
            Check(vk.WaitForFences(device, 1, &copied, true, ulong.MaxValue), "vkWaitForFences");
            void* mapped;
            Check(vk.MapMemory(device, memory, 0, source.Bytes, 0, &mapped), "vkMapMemory");
            var values = new ReadOnlySpan<float>(mapped, (int)(source.Bytes / 4)).ToArray();
            vk.UnmapMemory(device, memory);
            return values;
        }
        finally
        {
            vk.DestroyFence(device, copied, null);
            vk.FreeCommandBuffers(device, commandPool, 1, &cb);
            vk.DestroyBuffer(device, buffer, null);
            vk.FreeMemory(device, memory, null);
        }
    }

    void Record(uint frameIndex)
    {
        Check(vk.ResetCommandBuffer(commandBuffer, 0), "vkResetCommandBuffer");
        var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
        Check(vk.BeginCommandBuffer(commandBuffer, &begin), "vkBeginCommandBuffer");
        vk.CmdBindPipeline(commandBuffer, PipelineBindPoint.Compute, pipeline);
        var set = descriptorSet;
        vk.CmdBindDescriptorSets(commandBuffer, PipelineBindPoint.Compute, pipelineLayout, 0, 1, &set, 0, null);
        var push = stackalloc uint[] { Width, Height, frameIndex, rounds };
        vk.CmdPushConstants(commandBuffer, pipelineLayout, ShaderStageFlags.ComputeBit, 0, 16, push);
        vk.CmdDispatch(commandBuffer, (Width + LocalSize - 1) / LocalSize, (Height + LocalSize - 1) / LocalSize, 1);
        var barrier = new MemoryBarrier { SType = StructureType.MemoryBarrier, SrcAccessMask = AccessFlags.ShaderWriteBit, DstAccessMask = AccessFlags.TransferReadBit };
        vk.CmdPipelineBarrier(commandBuffer, PipelineStageFlags.ComputeShaderBit, PipelineStageFlags.TransferBit, 0, 1, &barrier, 0, null, 0, null);
        var region = new BufferCopy(0, 0, ImageBytes);
        vk.CmdCopyBuffer(commandBuffer, image, presented, 1, &region);
        Check(vk.EndCommandBuffer(commandBuffer), "vkEndCommandBuffer");
    }

    Instance CreateInstance(DebugUtilsMessengerCreateInfoEXT* messengerInfo)
    {
        bool validation = messengerInfo is not null;
        var layers = (byte**)SilkMarshal.StringArrayToPtr(["VK_LAYER_KHRONOS_validation"]);
        var extensions = (byte**)SilkMarshal.StringArrayToPtr(["VK_EXT_debug_utils"]);
        try
        {
            var app = new ApplicationInfo { SType = StructureType.ApplicationInfo, ApiVersion = Vk.Version12 };
            var info = new InstanceCreateInfo
            {
                SType = StructureType.InstanceCreateInfo,
                PApplicationInfo = &app,
                EnabledLayerCount = validation ? 1u : 0,
                PpEnabledLayerNames = layers,
                EnabledExtensionCount = validation ? 1u : 0,
                PpEnabledExtensionNames = extensions,
                // In the chain too, so vkCreateInstance and vkDestroyInstance are checked as well.
                PNext = messengerInfo,
            };
            Check(vk.CreateInstance(&info, null, out var created), "vkCreateInstance");
            return created;
        }
        finally
        {
            SilkMarshal.Free((nint)layers);
            SilkMarshal.Free((nint)extensions);
        }
    }

    static DebugUtilsMessengerCreateInfoEXT MessengerInfo(GCHandle errors) => new()
    {
        SType = StructureType.DebugUtilsMessengerCreateInfoExt,
        MessageSeverity = DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt | DebugUtilsMessageSeverityFlagsEXT.WarningBitExt,
        MessageType = DebugUtilsMessageTypeFlagsEXT.GeneralBitExt | DebugUtilsMessageTypeFlagsEXT.ValidationBitExt,
        PfnUserCallback = new PfnDebugUtilsMessengerCallbackEXT(
            (delegate* unmanaged[Cdecl]<DebugUtilsMessageSeverityFlagsEXT, DebugUtilsMessageTypeFlagsEXT, DebugUtilsMessengerCallbackDataEXT*, void*, Bool32>)&OnMessage),
        PUserData = (void*)GCHandle.ToIntPtr(errors),
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static Bool32 OnMessage(DebugUtilsMessageSeverityFlagsEXT severity, DebugUtilsMessageTypeFlagsEXT type, DebugUtilsMessengerCallbackDataEXT* data, void* user)
    {
        // The layer may call back from the library's threads as well as the host's.
        if (severity.HasFlag(DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt) && GCHandle.FromIntPtr((nint)user).Target is List<string> errors)
            lock (errors) errors.Add(Marshal.PtrToStringUTF8((nint)data->PMessage) ?? "");
        return false;
    }

    DebugUtilsMessengerEXT CreateMessenger(DebugUtilsMessengerCreateInfoEXT* info)
    {
        var create = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerCreateInfoEXT*, AllocationCallbacks*, DebugUtilsMessengerEXT*, Result>)
            vk.GetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT").Handle;
        DebugUtilsMessengerEXT created;
        Check(create(instance, info, null, &created), "vkCreateDebugUtilsMessengerEXT");
        return created;
    }

    /// <summary>A discrete GPU if there is one, else an integrated one, else the first device
    /// (lavapipe): the choice an engine makes.</summary>
    PhysicalDevice ChoosePhysicalDevice(out string name)
    {
        uint count = 0;
        Check(vk.EnumeratePhysicalDevices(instance, &count, null), "vkEnumeratePhysicalDevices");
        if (count == 0) throw new InvalidOperationException("no Vulkan device (for the CPU device: apt-get install mesa-vulkan-drivers)");
        var devices = new PhysicalDevice[count];
        fixed (PhysicalDevice* p = devices) Check(vk.EnumeratePhysicalDevices(instance, &count, p), "vkEnumeratePhysicalDevices");
        int Rank(PhysicalDevice d) => vk.GetPhysicalDeviceProperties(d).DeviceType switch
        {
            PhysicalDeviceType.DiscreteGpu => 0,
            PhysicalDeviceType.IntegratedGpu => 1,
            _ => 2,
        };
        var chosen = devices.OrderBy(Rank).First();
        var props = vk.GetPhysicalDeviceProperties(chosen);
        name = Marshal.PtrToStringUTF8((nint)props.DeviceName) ?? "?";
        return chosen;
    }

    uint ComputeFamily()
    {
        uint count = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(physicalDevice, &count, null);
        var families = new QueueFamilyProperties[count];
        fixed (QueueFamilyProperties* p = families) vk.GetPhysicalDeviceQueueFamilyProperties(physicalDevice, &count, p);
        int index = Array.FindIndex(families, f => f.QueueFlags.HasFlag(QueueFlags.ComputeBit));
        if (index < 0) throw new InvalidOperationException("the device has no compute queue");
        return (uint)index;
    }

    /// <summary>One queue and timeline semaphores (VkPrompt's one requirement; Vulkan 1.2 core),
    /// nothing else; <paramref name="enabled"/> is read from the very chain the device was made
    /// with, so what <see cref="Declared"/> declares cannot drift from what was enabled.</summary>
    Device CreateDevice(out HostFeatures enabled)
    {
        var features12 = new PhysicalDeviceVulkan12Features { SType = StructureType.PhysicalDeviceVulkan12Features, TimelineSemaphore = true };
        float priority = 1f;
        var queueInfo = new DeviceQueueCreateInfo { SType = StructureType.DeviceQueueCreateInfo, QueueFamilyIndex = family, QueueCount = 1, PQueuePriorities = &priority };
        var info = new DeviceCreateInfo { SType = StructureType.DeviceCreateInfo, QueueCreateInfoCount = 1, PQueueCreateInfos = &queueInfo, PNext = &features12 };
        Check(vk.CreateDevice(physicalDevice, &info, null, out var created), "vkCreateDevice");
        enabled = HostFeatures.FromChain((nint)(&info));
        return created;
    }

    void CreateFrameResources()
    {
        (image, imageMemory) = CreateBuffer(ImageBytes, BufferUsageFlags.StorageBufferBit | BufferUsageFlags.TransferSrcBit, MemoryPropertyFlags.DeviceLocalBit);
        (presented, presentedMemory) = CreateBuffer(ImageBytes, BufferUsageFlags.TransferDstBit, MemoryPropertyFlags.DeviceLocalBit);

        var binding = new DescriptorSetLayoutBinding(0, DescriptorType.StorageBuffer, 1, ShaderStageFlags.ComputeBit);
        var setInfo = new DescriptorSetLayoutCreateInfo { SType = StructureType.DescriptorSetLayoutCreateInfo, BindingCount = 1, PBindings = &binding };
        Check(vk.CreateDescriptorSetLayout(device, &setInfo, null, out setLayout), "vkCreateDescriptorSetLayout");
        var range = new PushConstantRange(ShaderStageFlags.ComputeBit, 0, 16);
        var sl = setLayout;
        var layoutInfo = new PipelineLayoutCreateInfo { SType = StructureType.PipelineLayoutCreateInfo, SetLayoutCount = 1, PSetLayouts = &sl, PushConstantRangeCount = 1, PPushConstantRanges = &range };
        Check(vk.CreatePipelineLayout(device, &layoutInfo, null, out pipelineLayout), "vkCreatePipelineLayout");
        pipeline = CreatePipeline("frame.spv");

        var size = new DescriptorPoolSize(DescriptorType.StorageBuffer, 1);
        var poolInfo = new DescriptorPoolCreateInfo { SType = StructureType.DescriptorPoolCreateInfo, MaxSets = 1, PoolSizeCount = 1, PPoolSizes = &size };
        Check(vk.CreateDescriptorPool(device, &poolInfo, null, out descriptorPool), "vkCreateDescriptorPool");
        var allocInfo = new DescriptorSetAllocateInfo { SType = StructureType.DescriptorSetAllocateInfo, DescriptorPool = descriptorPool, DescriptorSetCount = 1, PSetLayouts = &sl };
        Check(vk.AllocateDescriptorSets(device, &allocInfo, out descriptorSet), "vkAllocateDescriptorSets");
        var bufferInfo = new DescriptorBufferInfo(image, 0, ImageBytes);
        var write = new WriteDescriptorSet { SType = StructureType.WriteDescriptorSet, DstSet = descriptorSet, DstBinding = 0, DescriptorCount = 1, DescriptorType = DescriptorType.StorageBuffer, PBufferInfo = &bufferInfo };
        vk.UpdateDescriptorSets(device, 1, &write, 0, null);

        var cmdPoolInfo = new CommandPoolCreateInfo { SType = StructureType.CommandPoolCreateInfo, QueueFamilyIndex = family, Flags = CommandPoolCreateFlags.ResetCommandBufferBit };
        Check(vk.CreateCommandPool(device, &cmdPoolInfo, null, out commandPool), "vkCreateCommandPool");
        var cbInfo = new CommandBufferAllocateInfo { SType = StructureType.CommandBufferAllocateInfo, CommandPool = commandPool, Level = CommandBufferLevel.Primary, CommandBufferCount = 1 };
        Check(vk.AllocateCommandBuffers(device, &cbInfo, out commandBuffer), "vkAllocateCommandBuffers");
        var fenceInfo = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
        Check(vk.CreateFence(device, &fenceInfo, null, out fence), "vkCreateFence");
    }

    (Buffer, DeviceMemory) CreateBuffer(ulong bytes, BufferUsageFlags usage, MemoryPropertyFlags properties)
    {
        var info = new BufferCreateInfo { SType = StructureType.BufferCreateInfo, Size = bytes, Usage = usage, SharingMode = SharingMode.Exclusive };
        Check(vk.CreateBuffer(device, &info, null, out var buffer), "vkCreateBuffer");
        vk.GetBufferMemoryRequirements(device, buffer, out var req);
        vk.GetPhysicalDeviceMemoryProperties(physicalDevice, out var mem);
        int type = -1;
        for (int i = 0; i < mem.MemoryTypeCount && type < 0; i++)
            if ((req.MemoryTypeBits & (1u << i)) != 0 && mem.MemoryTypes[i].PropertyFlags.HasFlag(properties)) type = i;
        if (type < 0) throw new InvalidOperationException($"no {properties} memory type for a {usage} buffer");
        var alloc = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = req.Size, MemoryTypeIndex = (uint)type };
        Check(vk.AllocateMemory(device, &alloc, null, out var memory), "vkAllocateMemory");
        Check(vk.BindBufferMemory(device, buffer, memory, 0), "vkBindBufferMemory");
        return (buffer, memory);
    }

    /// <summary>The compute pipeline of an embedded SPIR-V module (compiled from this folder's
    /// .comp files at build time).</summary>
    Pipeline CreatePipeline(string resource)
    {
        using var stream = typeof(HostRenderer).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"{resource} is not embedded; rebuild the sample");
        var code = new byte[stream.Length];
        stream.ReadExactly(code);
        ShaderModule module;
        fixed (byte* c = code)
        {
            var info = new ShaderModuleCreateInfo { SType = StructureType.ShaderModuleCreateInfo, CodeSize = (nuint)code.Length, PCode = (uint*)c };
            Check(vk.CreateShaderModule(device, &info, null, out module), "vkCreateShaderModule");
        }
        try
        {
            var entry = (byte*)SilkMarshal.StringToPtr("main");
            try
            {
                var stage = new PipelineShaderStageCreateInfo { SType = StructureType.PipelineShaderStageCreateInfo, Stage = ShaderStageFlags.ComputeBit, Module = module, PName = entry };
                var info = new ComputePipelineCreateInfo { SType = StructureType.ComputePipelineCreateInfo, Stage = stage, Layout = pipelineLayout };
                Check(vk.CreateComputePipelines(device, default, 1, &info, null, out var created), "vkCreateComputePipelines");
                return created;
            }
            finally { SilkMarshal.Free((nint)entry); }
        }
        finally { vk.DestroyShaderModule(device, module, null); }
    }

    static void Check(Result r, string call)
    {
        if (r != Result.Success) throw new InvalidOperationException($"{call} failed: {r}");
    }

    /// <summary>Destroys what the host made, device last but one and instance last; the library's
    /// context must be disposed before (it borrows the device).</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (device.Handle != 0)
        {
            vk.DestroyFence(device, fence, null);
            vk.DestroyCommandPool(device, commandPool, null);
            vk.DestroyDescriptorPool(device, descriptorPool, null);
            vk.DestroyPipeline(device, pipeline, null);
            vk.DestroyPipelineLayout(device, pipelineLayout, null);
            vk.DestroyDescriptorSetLayout(device, setLayout, null);
            vk.DestroyBuffer(device, image, null);
            vk.DestroyBuffer(device, presented, null);
            vk.FreeMemory(device, imageMemory, null);
            vk.FreeMemory(device, presentedMemory, null);
            vk.DestroyDevice(device, null);
        }
        if (messenger.Handle != 0)
        {
            var destroy = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)
                vk.GetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT").Handle;
            destroy(instance, messenger, null);
        }
        if (instance.Handle != 0) vk.DestroyInstance(instance, null);
        errorsHandle.Free();
        vk.Dispose();
    }
}
