using System.Diagnostics;
using System.Runtime.InteropServices;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>
/// One Vulkan device and everything VkPrompt keeps on it: memory pool, kernels, pipeline cache.
/// It either creates its own instance and device (<see cref="Create"/>) or adopts handles a host
/// already owns (<see cref="Adopt"/>); it destroys exactly what it created and nothing else.
/// </summary>
public sealed unsafe class GpuContext : IDisposable
{
    /// <summary>The Silk.NET Vulkan API object the context calls through (the host's, when adopted).</summary>
    public Vk Vk { get; }
    /// <summary>The Vulkan instance the device belongs to.</summary>
    public Instance Instance { get; }
    /// <summary>The physical device the logical <see cref="Device"/> was made on.</summary>
    public PhysicalDevice PhysicalDevice { get; }
    /// <summary>The logical device every buffer and pipeline of the context lives on.</summary>
    public Device Device { get; }
    /// <summary>The compute queue the context submits to; a host that adopted it must not submit to it
    /// from another thread while the context works.</summary>
    public Queue Queue { get; }
    /// <summary>The family index of <see cref="Queue"/>, which the command pool is made for.</summary>
    public uint QueueFamily { get; }
    /// <summary>What the device can do, as queried when the context was made.</summary>
    public DeviceCapabilities Capabilities { get; }
    internal ValidationLog Validation { get; } = new();
    /// <summary>The options the context was made with (defaults where none were given).</summary>
    public GpuOptions Options { get; }
    internal MemoryPool Memory { get; }

    /// <summary>Every choice made for this device (<see cref="DevicePlan"/>), once, from its
    /// capabilities and the options.</summary>
    public DevicePlan Plan { get; }

    /// <summary>Which build of the matrix-unit kernel runs the products with 16-bit weights, if
    /// any (<see cref="DevicePlan.MatrixUnits"/>).</summary>
    internal MatrixUnits MatrixUnits => Plan.MatrixUnits;

    /// <summary>Products with 16-bit weights run through the matrix-unit kernel, on the
    /// matrix units or emulated (<see cref="MatrixUnits"/>).</summary>
    internal bool UsesMatrixUnits => MatrixUnits != MatrixUnits.None;

    /// <summary>The matrix-unit kernel runs with its matrix operations emulated
    /// (<see cref="MatrixUnitsRequest.Emulate"/>, matmul_coopmat_emulated.comp).</summary>
    internal bool MatrixUnitsEmulated => MatrixUnits == MatrixUnits.Emulated;

    /// <summary>Each kernel's <see cref="Runtime.Kernel.Statistics"/> are collected (<see cref="DevicePlan.PipelineStatistics"/>).</summary>
    internal bool PipelineStatistics => Plan.PipelineStatistics;

    /// <summary>Every kernel created so far, in the order it was first asked for.</summary>
    internal IReadOnlyCollection<Kernel> Kernels => kernels.Values;

    /// <summary>The storage-buffer range kernels may bind, after any test override.</summary>
    internal long MaxBindingBytes => Plan.MaxBindingBytes;

    /// <summary>The tilings <see cref="Kernels.MatMulTuner"/> measured fastest on this device.</summary>
    internal Kernels.MatMulTunings MatMulTunings { get; } = new();

    readonly bool ownsInstance, ownsDevice;
    readonly GCHandle validationHandle;
    readonly DebugUtilsMessengerEXT messenger;
    readonly CommandPool commandPool;
    readonly Fence fence;
    readonly PipelineCacheStore pipelineCache;
    readonly Dictionary<KernelKey, Kernel> kernels = new();
    bool disposed;

    internal PipelineCache PipelineCache => pipelineCache.Handle;

    GpuContext(Vk vk, Instance instance, PhysicalDevice pd, Device device, Queue queue, uint family,
               DevicePlan plan, bool ownsInstance, bool ownsDevice,
               GCHandle validationHandle, DebugUtilsMessengerEXT messenger, ValidationLog validation)
    {
        Vk = vk; Instance = instance; PhysicalDevice = pd; Device = device; Queue = queue; QueueFamily = family;
        Plan = plan; Capabilities = plan.Capabilities; Options = plan.Options;
        this.ownsInstance = ownsInstance; this.ownsDevice = ownsDevice;
        this.validationHandle = validationHandle; this.messenger = messenger; Validation = validation;

        var poolInfo = new CommandPoolCreateInfo
        {
            SType = StructureType.CommandPoolCreateInfo,
            QueueFamilyIndex = family,
            Flags = CommandPoolCreateFlags.ResetCommandBufferBit,
        };
        GpuException.Check(vk.CreateCommandPool(device, &poolInfo, null, out commandPool), "vkCreateCommandPool");
        var fenceInfo = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
        GpuException.Check(vk.CreateFence(device, &fenceInfo, null, out fence), "vkCreateFence");
        Memory = new MemoryPool(this, cap: plan.MemoryCapBytes, budget: plan.MemoryBudget ? MemoryPool.DeviceBudget(this) : null, budgetMargin: Options.MemoryBudgetMargin);
        pipelineCache = new PipelineCacheStore(this);
    }

    /// <summary>Lists every Vulkan device without creating a logical device.</summary>
    public static IReadOnlyList<DeviceCapabilities> ListDevices() => DeviceBringUp.ListDevices();

    /// <summary>Creates an instance and a device chosen by <see cref="GpuOptions.Device"/>, as its
    /// <see cref="DevicePlan"/> needs it.</summary>
    /// <param name="options">null takes every default.</param>
    public static GpuContext Create(GpuOptions? options = null)
    {
        options ??= new GpuOptions();
        var vk = DeviceBringUp.LoadVulkan();
        var validation = new ValidationLog();
        var handle = GCHandle.Alloc(validation);
        Instance instance = default;
        try
        {
            // The workgroup-scope kernel is SPIR-V 1.6, which needs Vulkan 1.3; everything else is 1.2.
            instance = DeviceBringUp.CreateInstance(vk, options.Validation ? options.Describe(nameof(GpuOptions.Validation), true) : null, handle, out var messenger,
                                                    options.MatrixUnits == MatrixUnitsRequest.Nv2 ? Vk.Version13 : Vk.Version12);
            var devices = DeviceBringUp.EnumerateDevices(vk, instance);
            if (devices.Count == 0) throw new GpuException(NoDeviceMessage);
            var caps = DeviceBringUp.Query(vk, instance, devices);
            int chosen = DeviceBringUp.Choose(caps, options.Device);
            var plan = DevicePlan.For(caps[chosen], options);
            var pd = devices[chosen];
            uint family = DeviceBringUp.ComputeQueueFamily(vk, pd);
            var device = DeviceBringUp.CreateDevice(vk, pd, family, plan);
            vk.GetDeviceQueue(device, family, 0, out var queue);
            options.Log?.Invoke($"device {chosen}: {caps[chosen].Name} ({caps[chosen].DriverName} {caps[chosen].DriverVersion})");
            return new GpuContext(vk, instance, pd, device, queue, family, plan, true, true, handle, messenger, validation);
        }
        catch
        {
            if (instance.Handle != 0) vk.DestroyInstance(instance, null);
            handle.Free();
            throw;
        }
    }

    /// <summary>Uses a device the host already created. The caller keeps ownership of every
    /// handle passed in and must keep them alive until this context is disposed. The
    /// capabilities describe the physical device, since Vulkan cannot report what a host enabled:
    /// fp16/bf16 weights need the host to have enabled storageBuffer16BitAccess. Products run on
    /// the portable kernels, never the matrix units (<see cref="DevicePlan"/>).</summary>
    public static GpuContext Adopt(Vk vk, Instance instance, PhysicalDevice physicalDevice, Device device, Queue queue, uint queueFamily, GpuOptions? options = null)
    {
        var caps = DeviceCapabilities.Query(vk, instance, physicalDevice, 0, DeviceBringUp.DeviceExtensions(vk, physicalDevice));
        var plan = DevicePlan.ForAdopted(caps, options ?? new GpuOptions());
        return new GpuContext(vk, instance, physicalDevice, device, queue, queueFamily, plan, false, false, default, default, new ValidationLog());
    }

    /// <summary>What to tell a user whose machine has no Vulkan driver at all.</summary>
    internal const string NoDeviceMessage = "no Vulkan device found; install a driver (e.g. sudo apt-get install mesa-vulkan-drivers for the lavapipe CPU device)";

    /// <summary>Returns the cached kernel for this shader and specialization, creating it once.</summary>
    internal Kernel Kernel(string shader, KernelLayout layout, params int[] specialization)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var key = new KernelKey(shader, string.Join(',', specialization));
        if (!kernels.TryGetValue(key, out var k))
        {
            var sw = Stopwatch.StartNew();
            k = new Kernel(this, shader, layout, specialization);
            kernels[key] = k;
            PipelineCreationTime += sw.Elapsed;
        }
        else if (!k.Layout.Equals(layout))
            throw new InvalidOperationException($"kernel {shader} requested with two different layouts");
        return k;
    }

    /// <summary>Total time spent creating pipelines (shows the pipeline cache at work).</summary>
    internal TimeSpan PipelineCreationTime { get; private set; }

    readonly record struct KernelKey(string Shader, string Specialization);

    /// <summary>Records commands with <paramref name="record"/>, submits them and waits.</summary>
    internal void SubmitAndWait(Action<CommandBuffer> record)
    {
        var cb = AllocateCommandBuffer();
        try
        {
            var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
            GpuException.Check(Vk.BeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer");
            record(cb);
            GpuException.Check(Vk.EndCommandBuffer(cb), "vkEndCommandBuffer");
            Submit(cb);
        }
        finally { FreeCommandBuffer(cb); }
    }

    internal CommandBuffer AllocateCommandBuffer()
    {
        var info = new CommandBufferAllocateInfo
        {
            SType = StructureType.CommandBufferAllocateInfo,
            CommandPool = commandPool,
            Level = CommandBufferLevel.Primary,
            CommandBufferCount = 1,
        };
        GpuException.Check(Vk.AllocateCommandBuffers(Device, &info, out var cb), "vkAllocateCommandBuffers");
        return cb;
    }

    internal void FreeCommandBuffer(CommandBuffer cb) => Vk.FreeCommandBuffers(Device, commandPool, 1, &cb);

    internal void Submit(CommandBuffer cb)
    {
        var submit = new SubmitInfo { SType = StructureType.SubmitInfo, CommandBufferCount = 1, PCommandBuffers = &cb };
        var f = fence;
        GpuException.Check(Vk.ResetFences(Device, 1, &f), "vkResetFences");
        GpuException.Check(Vk.QueueSubmit(Queue, 1, &submit, fence), "vkQueueSubmit");
        GpuException.Check(Vk.WaitForFences(Device, 1, &f, true, ulong.MaxValue), "vkWaitForFences");
    }

    /// <summary>Frees the kernels, pipeline cache, memory and command pool; the device and
    /// instance only if the context created them. It waits for nothing: every submit of this
    /// context has waited for its own fence before returning, so none of its work is in flight,
    /// and a device wait idle would also wait for a host's work on a device it lent.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var k in kernels.Values) k.Dispose();
        kernels.Clear();
        pipelineCache.Dispose();
        Memory.Dispose();
        Vk.DestroyFence(Device, fence, null);
        Vk.DestroyCommandPool(Device, commandPool, null);
        if (ownsDevice) Vk.DestroyDevice(Device, null);
        if (messenger.Handle != 0)
        {
            using var fnName = new ScopedUtf8("vkDestroyDebugUtilsMessengerEXT");
            var destroy = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)Vk.GetInstanceProcAddr(Instance, fnName.Ptr).Handle;
            destroy(Instance, messenger, null);
        }
        if (ownsInstance) Vk.DestroyInstance(Instance, null);
        if (validationHandle.IsAllocated) validationHandle.Free();
    }
}
