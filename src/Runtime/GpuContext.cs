using System.Diagnostics;
using System.Runtime.InteropServices;
using Silk.NET.Vulkan;
using Semaphore = Silk.NET.Vulkan.Semaphore;

namespace VkPrompt.Runtime;

/// <summary>
/// One Vulkan device and everything VkPrompt keeps on it: memory pool, kernels, pipeline cache.
/// It either creates its own instance and device (<see cref="Create"/>) or adopts handles a host
/// already owns (<see cref="Adopt(HostDevice, GpuOptions?)"/>); it destroys exactly what it created and nothing else.
/// <para>Threads: a context is used by one thread at a time, and this is enforced: a call that
/// touches it (creating kernels, allocating or freeing buffers, recording, submitting or
/// advancing a command graph, uploads, downloads, <see cref="Dispose"/>) made while another
/// thread is inside such a call throws an <see cref="InvalidOperationException"/> naming the
/// contract, rather than corrupting the command or memory pool Vulkan requires to be externally
/// synchronised. Sequential use from different threads is fine (hand it over between calls).
/// Calls that may cross threads: <see cref="GpuTicket.IsComplete"/> and <see cref="GpuTicket.Wait()"/>
/// (a ticket may be polled or waited on from any thread while the context works on another),
/// and the host's <see cref="QueueLock"/> callbacks run on the submitting thread. Two contexts
/// are independent: each may have a thread of its own.</para>
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
    readonly QueueLock? queueLock;
    readonly PipelineCacheStore pipelineCache;
    readonly Dictionary<KernelKey, Kernel> kernels = new();
    readonly ThreadGuard threadGuard = new();
    bool disposed;

    /// <summary>Holds the context for the calling thread until the scope is disposed (<see cref="ThreadGuard"/>);
    /// every entry point that touches the context takes it: <c>using var _ = ctx.Enter();</c>.</summary>
    /// <exception cref="InvalidOperationException">Another thread is inside a call on this context.</exception>
    internal ThreadGuard.Scope Enter() => threadGuard.Enter();

    internal PipelineCache PipelineCache => pipelineCache.Handle;

    /// <summary>The context's timeline: every submit signals its next value (<see cref="GpuTicket"/>).</summary>
    internal GpuTimeline Timeline { get; }

    GpuContext(Vk vk, Instance instance, PhysicalDevice pd, Device device, Queue queue, uint family,
               DevicePlan plan, bool ownsInstance, bool ownsDevice,
               GCHandle validationHandle, DebugUtilsMessengerEXT messenger, ValidationLog validation, QueueLock? queueLock = null,
               PipelineCache hostPipelineCache = default)
    {
        Vk = vk; Instance = instance; PhysicalDevice = pd; Device = device; Queue = queue; QueueFamily = family;
        this.queueLock = queueLock;
        Plan = plan; Capabilities = plan.Capabilities; Options = plan.Options;
        this.ownsInstance = ownsInstance; this.ownsDevice = ownsDevice;
        this.validationHandle = validationHandle; this.messenger = messenger; Validation = validation;

        var poolInfo = new CommandPoolCreateInfo
        {
            SType = StructureType.CommandPoolCreateInfo,
            QueueFamilyIndex = family,
            Flags = CommandPoolCreateFlags.ResetCommandBufferBit,
        };
        // What is made here goes again if a later part fails: on an adopted device, which outlives
        // this context, it would otherwise stay for the host's whole run.
        try
        {
            GpuException.Check(vk.CreateCommandPool(device, &poolInfo, null, out commandPool), "vkCreateCommandPool");
            Timeline = new GpuTimeline(vk, device);
            Memory = new MemoryPool(this, cap: plan.MemoryCapBytes, budget: plan.MemoryBudget ? MemoryPool.DeviceBudget(this) : null, budgetMargin: Options.MemoryBudgetMargin);
            pipelineCache = new PipelineCacheStore(this, hostPipelineCache);
        }
        catch
        {
            Memory?.Dispose();
            Timeline?.Dispose();
            if (commandPool.Handle != 0) vk.DestroyCommandPool(device, commandPool, null);
            throw;
        }
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
        Device device = default;
        DebugUtilsMessengerEXT messenger = default;
        try
        {
            // The workgroup-scope kernel is SPIR-V 1.6, which needs Vulkan 1.3; everything else is 1.2.
            instance = DeviceBringUp.CreateInstance(vk, options.Validation ? options.Describe(nameof(GpuOptions.Validation), true) : null, handle, out messenger,
                                                    options.MatrixUnits == MatrixUnitsRequest.Nv2 ? Vk.Version13 : Vk.Version12);
            var devices = DeviceBringUp.EnumerateDevices(vk, instance);
            if (devices.Count == 0) throw new GpuException(NoDeviceMessage);
            var caps = DeviceBringUp.Query(vk, instance, devices);
            int chosen = DeviceBringUp.Choose(caps, options.Device);
            var plan = DevicePlan.For(caps[chosen], options);
            var pd = devices[chosen];
            uint family = DeviceBringUp.ComputeQueueFamily(DeviceBringUp.QueueFamilies(vk, pd));
            device = DeviceBringUp.CreateDevice(vk, pd, family, plan);
            vk.GetDeviceQueue(device, family, 0, out var queue);
            options.Log?.Invoke($"device {chosen}: {caps[chosen].Name} ({caps[chosen].DriverName} {caps[chosen].DriverVersion})");
            return new GpuContext(vk, instance, pd, device, queue, family, plan, true, true, handle, messenger, validation);
        }
        catch
        {
            // Children before their parents, as Dispose does.
            if (device.Handle != 0) vk.DestroyDevice(device, null);
            DestroyMessenger(vk, instance, messenger);
            if (instance.Handle != 0) vk.DestroyInstance(instance, null);
            handle.Free();
            throw;
        }
    }

    /// <summary>Uses a device the host created, as the host declares it (<see cref="HostDevice"/>):
    /// the host keeps ownership of every handle, keeps them alive until this context is disposed,
    /// and destroys them after it. The context uses the features and extensions the host
    /// declares enabled and nothing more (<see cref="DevicePlan.ForAdopted"/>): the matrix units
    /// where it enabled them, 16-bit weights only with storageBuffer16BitAccess. Pipelines go
    /// through the host's <see cref="HostDevice.PipelineCache"/> where it lends one; nothing is
    /// written to disk unless <see cref="GpuOptions.PipelineCacheDirectory"/> names a directory.</summary>
    /// <exception cref="GpuException">The declaration lacks what VkPrompt needs (Vulkan 1.2, a
    /// queue with compute, timeline semaphores), or the options ask for what the host did not
    /// enable; the message names what is missing.</exception>
    public static GpuContext Adopt(HostDevice host, GpuOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new GpuOptions();
        if (host.PipelineCache.Handle != 0 && options.PipelineCacheDirectory is not null)
            throw new GpuException($"GpuContext.Adopt: both HostDevice.PipelineCache and {options.Describe(nameof(GpuOptions.PipelineCacheDirectory), options.PipelineCacheDirectory)} are set; " +
                                   "pipelines go through one cache: the host's (which the host persists), or the directory's");
        var vk = host.GetInstanceProcAddr == 0 ? DeviceBringUp.LoadVulkan() : DeviceBringUp.LoadVulkan(host.Instance, host.GetInstanceProcAddr);
        vk.GetPhysicalDeviceProperties(host.PhysicalDevice, out var properties);
        var families = DeviceBringUp.QueueFamilies(vk, host.PhysicalDevice);
        host.Check(properties.ApiVersion, families);
        var caps = DeviceCapabilities.Query(vk, host.Instance, host.PhysicalDevice, 0, DeviceBringUp.DeviceExtensions(vk, host.PhysicalDevice));
        // Timestamps are the host's queue's to write: the device's answer is any compute family's.
        caps = caps with { TimestampsSupported = caps.TimestampsSupported && families[host.QueueFamily].TimestampValidBits > 0 };
        var plan = DevicePlan.ForAdopted(host, caps, options);
        vk.GetDeviceQueue(host.Device, host.QueueFamily, host.QueueIndex, out var queue);
        return new GpuContext(vk, host.Instance, host.PhysicalDevice, host.Device, queue, host.QueueFamily, plan, false, false, default, default,
                              new ValidationLog(), host.QueueLock, host.PipelineCache);
    }

    /// <summary>What to tell a user whose machine has no Vulkan driver at all.</summary>
    internal const string NoDeviceMessage = "no Vulkan device found; install a driver (e.g. sudo apt-get install mesa-vulkan-drivers for the lavapipe CPU device)";

    /// <summary>Returns the cached kernel for this shader and specialization, creating it once.</summary>
    internal Kernel Kernel(string shader, KernelLayout layout, params int[] specialization) => PinnedKernel(shader, layout, 0, specialization);

    /// <summary>A kernel of the matrix units (or their emulation): in full subgroups of
    /// <see cref="DevicePlan.MatrixUnitsSubgroupSize"/> where the plan pins them, in full subgroups
    /// wherever it multiplies through VK_KHR_cooperative_matrix (<see cref="Runtime.Kernel.FullSubgroups"/>), composing its
    /// 16x16x16 products of the plan's <see cref="DevicePlan.MatrixUnitsFragment"/> (constants no
    /// other build declares, which Vulkan then ignores).</summary>
    internal Kernel MatrixUnitsKernel(string shader, KernelLayout layout, params int[] specialization)
    {
        var f = Plan.MatrixUnitsFragment;
        return PinnedKernel(shader, layout, Plan.MatrixUnitsSubgroupPinned ? Plan.MatrixUnitsSubgroupSize : 0, specialization,
                            MatrixFragment.SpecializationIds.Zip([(int)f.M, (int)f.N, (int)f.K]).ToArray(),
                            Plan.MultipliesThroughKhr);
    }

    /// <summary><see cref="Kernel(string, KernelLayout, int[])"/> run in full subgroups of
    /// <paramref name="subgroupSize"/> invocations (0: the driver's choice; <see cref="Runtime.Kernel.RequiredSubgroupSize"/>),
    /// with <paramref name="placed"/> constants at their own ids beside the positional ones.</summary>
    internal Kernel PinnedKernel(string shader, KernelLayout layout, uint subgroupSize, int[] specialization, (uint Id, int Value)[]? placed = null,
                                 bool fullSubgroups = false)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var _ = Enter();
        placed ??= [];
        bool full = Runtime.Kernel.RunsInFullSubgroups(fullSubgroups, subgroupSize);
        var key = new KernelKey(shader, string.Join(',', specialization) + string.Concat(placed.Select(p => $";{p.Id}={p.Value}")) + (full ? ";full" : ""),
                                subgroupSize);
        if (!kernels.TryGetValue(key, out var k))
        {
            var sw = Stopwatch.StartNew();
            k = new Kernel(this, shader, layout, specialization, subgroupSize, placed, fullSubgroups);
            kernels[key] = k;
            PipelineCreationTime += sw.Elapsed;
        }
        else if (!k.Layout.Equals(layout))
            throw new InvalidOperationException($"kernel {shader} requested with two different layouts");
        return k;
    }

    /// <summary>Total time spent creating pipelines (shows the pipeline cache at work).</summary>
    internal TimeSpan PipelineCreationTime { get; private set; }

    readonly record struct KernelKey(string Shader, string Specialization, uint SubgroupSize);

    /// <summary>Records commands with <paramref name="record"/>, submits them and waits for them
    /// (a blocking call: uploads and downloads through a staging buffer).</summary>
    internal void SubmitAndWait(Action<CommandBuffer> record)
    {
        using var _ = Enter();
        var cb = AllocateCommandBuffer();
        try
        {
            var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
            GpuException.Check(Vk.BeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer");
            record(cb);
            GpuException.Check(Vk.EndCommandBuffer(cb), "vkEndCommandBuffer");
            Submit(cb, []).Wait();
        }
        finally { FreeCommandBuffer(cb); }
    }

    internal CommandBuffer AllocateCommandBuffer()
    {
        using var _ = Enter();
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

    internal void FreeCommandBuffer(CommandBuffer cb)
    {
        using var _ = Enter();
        Vk.FreeCommandBuffers(Device, commandPool, 1, &cb);
    }

    /// <summary>Submits <paramref name="cb"/> after <paramref name="waits"/> and returns at once
    /// with the ticket its completion signals. The host's queue lock, if it lent one, is held
    /// around the vkQueueSubmit alone.</summary>
    internal GpuTicket Submit(CommandBuffer cb, ReadOnlySpan<GpuWait> waits)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var _ = Enter();
        var ticket = Timeline.Next();
        int n = waits.Length;
        var waitSemaphores = stackalloc Semaphore[Math.Max(1, n)];
        var waitValues = stackalloc ulong[Math.Max(1, n)];
        var waitStages = stackalloc PipelineStageFlags[Math.Max(1, n)];
        for (int i = 0; i < n; i++)
        {
            waitSemaphores[i] = waits[i].Semaphore;
            waitValues[i] = waits[i].Value;
            // The host's value may guard any of our work, transfers included.
            waitStages[i] = PipelineStageFlags.AllCommandsBit;
        }
        var signal = Timeline.Semaphore;
        ulong signalValue = ticket.Value;
        var timeline = new TimelineSemaphoreSubmitInfo
        {
            SType = StructureType.TimelineSemaphoreSubmitInfo,
            WaitSemaphoreValueCount = (uint)n,
            PWaitSemaphoreValues = waitValues,
            SignalSemaphoreValueCount = 1,
            PSignalSemaphoreValues = &signalValue,
        };
        var submit = new SubmitInfo
        {
            SType = StructureType.SubmitInfo,
            PNext = &timeline,
            WaitSemaphoreCount = (uint)n,
            PWaitSemaphores = waitSemaphores,
            PWaitDstStageMask = waitStages,
            CommandBufferCount = 1,
            PCommandBuffers = &cb,
            SignalSemaphoreCount = 1,
            PSignalSemaphores = &signal,
        };
        Result r;
        // A host's lock that throws leaves the value unsubmitted: a value nothing will signal
        // would hang every later wait for it (Dispose's among them).
        try { queueLock?.Acquire(); }
        catch
        {
            Timeline.Unsubmit(ticket);
            throw;
        }
        try { r = Vk.QueueSubmit(Queue, 1, &submit, default); }
        finally { queueLock?.Release(); }
        if (r != Result.Success) Timeline.Unsubmit(ticket);
        GpuException.Check(r, "vkQueueSubmit");
        return ticket;
    }

    /// <summary>Frees the kernels, pipeline cache, memory and command pool; the device and
    /// instance only if the context created them. It waits for the context's own last ticket and
    /// for nothing else: a device or queue wait idle would also wait for a host's work on a
    /// device it lent.</summary>
    public void Dispose()
    {
        if (disposed) return;
        using var _ = Enter();
        // Buffers and command buffers must not be freed under work of ours still running.
        Timeline.Wait(Timeline.LastSubmitted, Timeout.InfiniteTimeSpan);
        disposed = true;
        foreach (var k in kernels.Values) k.Dispose();
        kernels.Clear();
        pipelineCache.Dispose();
        Memory.Dispose();
        Timeline.Dispose();
        Vk.DestroyCommandPool(Device, commandPool, null);
        if (ownsDevice) Vk.DestroyDevice(Device, null);
        DestroyMessenger(Vk, Instance, messenger);
        if (ownsInstance) Vk.DestroyInstance(Instance, null);
        if (validationHandle.IsAllocated) validationHandle.Free();
    }

    /// <summary>Destroys the validation layer's messenger, where there is one.</summary>
    internal static void DestroyMessenger(Vk vk, Instance instance, DebugUtilsMessengerEXT messenger)
    {
        if (messenger.Handle == 0) return;
        using var fnName = new ScopedUtf8("vkDestroyDebugUtilsMessengerEXT");
        var destroy = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)vk.GetInstanceProcAddr(instance, fnName.Ptr).Handle;
        destroy(instance, messenger, null);
    }
}
