using Silk.NET.Vulkan;
using Xunit;
using Buffer = Silk.NET.Vulkan.Buffer;
using Semaphore = Silk.NET.Vulkan.Semaphore;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// A test host's own GPU work on its <see cref="TestHost"/> device, written the way a renderer
/// would and without VkPrompt: a command pool, a host-visible buffer it copies into, a timeline
/// semaphore it signals from the CPU (to hold work back deterministically), and submits under the
/// host's own lock, each with its own fence.
/// </summary>
public sealed unsafe class HostCommands : IDisposable
{
    readonly TestHost host;
    readonly CommandPool pool;
    readonly List<(Buffer Buffer, DeviceMemory Memory)> buffers = new();
    readonly List<Semaphore> semaphores = new();
    readonly List<Fence> fences = new();
    readonly List<CommandBuffer> commandBuffers = new();
    Vk Vk => host.Vk;

    /// <summary>The host's queue lock: every submit, the host's and (through
    /// <see cref="VkPrompt.Runtime.QueueLock"/>) the library's, takes it.</summary>
    public object QueueLock { get; } = new();

    /// <summary>Library submits seen inside the lock (counted by <see cref="LentLock"/>).</summary>
    public int LibrarySubmits;
    /// <summary>Times the library released the lock without holding it, or took it twice.</summary>
    public int LockMisuse;
    int held;

    public HostCommands(TestHost host)
    {
        this.host = host;
        var info = new CommandPoolCreateInfo { SType = StructureType.CommandPoolCreateInfo, QueueFamilyIndex = host.QueueFamily };
        Assert.Equal(Result.Success, Vk.CreateCommandPool(host.Device, &info, null, out pool));
    }

    /// <summary>The lock as lent to the library: it counts the submits made inside it.</summary>
    public VkPrompt.Runtime.QueueLock LentLock => new(
        () => { Monitor.Enter(QueueLock); if (Interlocked.Increment(ref held) != 1) Interlocked.Increment(ref LockMisuse); Interlocked.Increment(ref LibrarySubmits); },
        () => { if (Interlocked.Decrement(ref held) != 0) Interlocked.Increment(ref LockMisuse); Monitor.Exit(QueueLock); });

    /// <summary>A host-visible, coherent buffer of <paramref name="bytes"/>, mapped.</summary>
    public (Buffer Buffer, IntPtr Mapped) HostBuffer(ulong bytes)
    {
        var info = new BufferCreateInfo { SType = StructureType.BufferCreateInfo, Size = bytes, Usage = BufferUsageFlags.TransferDstBit | BufferUsageFlags.TransferSrcBit, SharingMode = SharingMode.Exclusive };
        Assert.Equal(Result.Success, Vk.CreateBuffer(host.Device, &info, null, out var buffer));
        Vk.GetBufferMemoryRequirements(host.Device, buffer, out var req);
        Vk.GetPhysicalDeviceMemoryProperties(host.PhysicalDevice, out var props);
        var want = MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit;
        uint type = Enumerable.Range(0, (int)props.MemoryTypeCount).Select(i => (uint)i)
            .First(i => (req.MemoryTypeBits & (1u << (int)i)) != 0 && (props.MemoryTypes[(int)i].PropertyFlags & want) == want);
        var alloc = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = req.Size, MemoryTypeIndex = type };
        Assert.Equal(Result.Success, Vk.AllocateMemory(host.Device, &alloc, null, out var memory));
        Assert.Equal(Result.Success, Vk.BindBufferMemory(host.Device, buffer, memory, 0));
        void* p;
        Assert.Equal(Result.Success, Vk.MapMemory(host.Device, memory, 0, Vk.WholeSize, 0, &p));
        buffers.Add((buffer, memory));
        return (buffer, (IntPtr)p);
    }

    /// <summary>A timeline semaphore at 0, which the test signals from the CPU.</summary>
    public Semaphore Timeline()
    {
        var type = new SemaphoreTypeCreateInfo { SType = StructureType.SemaphoreTypeCreateInfo, SemaphoreType = SemaphoreType.Timeline };
        var info = new SemaphoreCreateInfo { SType = StructureType.SemaphoreCreateInfo, PNext = &type };
        Assert.Equal(Result.Success, Vk.CreateSemaphore(host.Device, &info, null, out var s));
        semaphores.Add(s);
        return s;
    }

    public void Signal(Semaphore semaphore, ulong value)
    {
        var info = new SemaphoreSignalInfo { SType = StructureType.SemaphoreSignalInfo, Semaphore = semaphore, Value = value };
        Assert.Equal(Result.Success, Vk.SignalSemaphore(host.Device, &info));
    }

    /// <summary>Records <paramref name="record"/> and submits it under the host's lock, after
    /// (<paramref name="wait"/>, <paramref name="value"/>) where given; returns its fence.</summary>
    public Fence Submit(Action<CommandBuffer> record, Semaphore wait = default, ulong value = 0)
    {
        var alloc = new CommandBufferAllocateInfo { SType = StructureType.CommandBufferAllocateInfo, CommandPool = pool, Level = CommandBufferLevel.Primary, CommandBufferCount = 1 };
        Assert.Equal(Result.Success, Vk.AllocateCommandBuffers(host.Device, &alloc, out var cb));
        commandBuffers.Add(cb);
        var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
        Assert.Equal(Result.Success, Vk.BeginCommandBuffer(cb, &begin));
        record(cb);
        Assert.Equal(Result.Success, Vk.EndCommandBuffer(cb));
        var fenceInfo = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
        Assert.Equal(Result.Success, Vk.CreateFence(host.Device, &fenceInfo, null, out var fence));
        fences.Add(fence);
        var stage = PipelineStageFlags.AllCommandsBit;
        var timeline = new TimelineSemaphoreSubmitInfo { SType = StructureType.TimelineSemaphoreSubmitInfo, WaitSemaphoreValueCount = wait.Handle != 0 ? 1u : 0, PWaitSemaphoreValues = &value };
        var submit = new SubmitInfo
        {
            SType = StructureType.SubmitInfo, PNext = &timeline, CommandBufferCount = 1, PCommandBuffers = &cb,
            WaitSemaphoreCount = wait.Handle != 0 ? 1u : 0, PWaitSemaphores = &wait, PWaitDstStageMask = &stage,
        };
        lock (QueueLock) Assert.Equal(Result.Success, Vk.QueueSubmit(host.Queue, 1, &submit, fence));
        return fence;
    }

    /// <summary>Copies <paramref name="bytes"/> of <paramref name="src"/> into <paramref name="dst"/> and makes them host-visible.</summary>
    public void CopyToHost(CommandBuffer cb, Buffer src, ulong srcOffset, Buffer dst, ulong bytes)
    {
        var region = new BufferCopy(srcOffset, 0, bytes);
        Vk.CmdCopyBuffer(cb, src, dst, 1, &region);
        var barrier = new MemoryBarrier { SType = StructureType.MemoryBarrier, SrcAccessMask = AccessFlags.TransferWriteBit, DstAccessMask = AccessFlags.HostReadBit };
        Vk.CmdPipelineBarrier(cb, PipelineStageFlags.TransferBit, PipelineStageFlags.HostBit, 0, 1, &barrier, 0, null, 0, null);
    }

    public bool IsSignalled(Fence fence) => Vk.GetFenceStatus(host.Device, fence) == Result.Success;

    public void Wait(Fence fence) => Assert.Equal(Result.Success, Vk.WaitForFences(host.Device, 1, &fence, true, ulong.MaxValue));

    /// <summary>Frees everything the host made here, after its work is done (the host may wait
    /// idle: it is the host).</summary>
    public void Dispose()
    {
        Vk.DeviceWaitIdle(host.Device);
        foreach (var f in fences) Vk.DestroyFence(host.Device, f, null);
        foreach (var s in semaphores) Vk.DestroySemaphore(host.Device, s, null);
        foreach (var (b, m) in buffers) { Vk.DestroyBuffer(host.Device, b, null); Vk.FreeMemory(host.Device, m, null); }
        Vk.DestroyCommandPool(host.Device, pool, null);
    }
}
