using Silk.NET.Vulkan;
using static System.FormattableString;

namespace VkPrompt.Runtime;

/// <summary>One heap's budget and this process's usage of it, in bytes, as VK_EXT_memory_budget
/// reports them (the usage counts the host's allocations as well as the pool's).</summary>
internal readonly record struct HeapBudget(long Budget, long Usage);

/// <summary>
/// Sub-allocates buffers from a few large VkDeviceMemory blocks: drivers cap the number of
/// allocations (often 4096) and each one is slow, so tensors never get their own.
/// First-fit over a sorted free list per block. A block that holds nothing is given back to the
/// driver when a buffer fits in no block, so memory freed by the passes of one batch shape is not
/// held beside the larger blocks of the next (data of varying length changes shape every few
/// steps); otherwise blocks live as long as the pool.
/// The blocks reserved never exceed the cap (<see cref="GpuOptions.MemoryCapBytes"/>) nor, where
/// a budget is given (<see cref="DevicePlan.MemoryBudget"/>), the heap's budget less the margin:
/// blocks shrink near them, and a buffer that fits in none is refused with a
/// <see cref="DoesNotFitException"/>.
/// </summary>
internal sealed unsafe class MemoryPool : IDisposable
{
    internal const long DefaultBlockBytes = 256L << 20;

    // Within a block's size of a limit, blocks are at most this large, and within this much of
    // it a block is just the buffer: otherwise the last of the room would all be held by one
    // block of one memory type while another type needs some (host-visible buffers live apart
    // from device-local ones on a discrete GPU), and a small cap would be one block that the
    // device-local weights take. The buffers that get blocks of their own there are few, far
    // from the driver's limit on allocations (4096 on most).
    const long TailBlockBytes = 16L << 20;

    readonly GpuContext ctx;
    readonly long blockBytes;
    readonly long? cap;
    readonly Func<int, HeapBudget>? budget;
    readonly double budgetMargin;
    readonly List<Block> blocks = new();
    readonly PhysicalDeviceMemoryProperties props;

    public long BytesInUse { get; private set; }
    public long PeakBytesInUse { get; private set; }
    /// <summary>Bytes of the blocks taken from the driver.</summary>
    public long BytesReserved { get; private set; }
    /// <summary>The most <see cref="BytesReserved"/> has been since the pool was made or <see cref="ResetPeak"/>.</summary>
    public long PeakBytesReserved { get; private set; }
    public int BlockCount => blocks.Count;

    /// <param name="ctx">the context whose device the memory is allocated on.</param>
    /// <param name="blockBytes">the size of a shared block; a larger buffer gets a block of its own.</param>
    /// <param name="cap">the most bytes the blocks may take together; null for no cap.</param>
    /// <param name="budget">each heap's budget and usage by heap index, asked before a block is
    /// reserved (<see cref="DeviceBudget"/>; the tests give a fake); null where none is known.</param>
    /// <param name="budgetMargin">the fraction of a heap's budget left unreserved (<see cref="GpuOptions.MemoryBudgetMargin"/>).</param>
    internal MemoryPool(GpuContext ctx, long blockBytes = DefaultBlockBytes, long? cap = null, Func<int, HeapBudget>? budget = null, double budgetMargin = 0.1)
    {
        this.ctx = ctx;
        this.blockBytes = blockBytes;
        this.cap = cap;
        this.budget = budget;
        this.budgetMargin = budgetMargin;
        ctx.Vk.GetPhysicalDeviceMemoryProperties(ctx.PhysicalDevice, out props);
    }

    /// <summary>The heaps' budgets as the device reports them now (VK_EXT_memory_budget, which
    /// the device must have enabled).</summary>
    internal static Func<int, HeapBudget> DeviceBudget(GpuContext ctx) => heap =>
    {
        var b = new PhysicalDeviceMemoryBudgetPropertiesEXT { SType = StructureType.PhysicalDeviceMemoryBudgetPropertiesExt };
        var p = new PhysicalDeviceMemoryProperties2 { SType = StructureType.PhysicalDeviceMemoryProperties2, PNext = &b };
        ctx.Vk.GetPhysicalDeviceMemoryProperties2(ctx.PhysicalDevice, &p);
        return new HeapBudget((long)b.HeapBudget[heap], (long)b.HeapUsage[heap]);
    };

    /// <summary>Resets the peaks so one phase (a training step, say) can be measured alone.</summary>
    public void ResetPeak()
    {
        PeakBytesInUse = BytesInUse;
        PeakBytesReserved = BytesReserved;
    }

    internal sealed class Block
    {
        public required DeviceMemory Memory;
        public required long Size;
        public required uint TypeIndex;
        public required bool HostVisible;
        public byte* Mapped;
        public readonly List<(long Offset, long Size)> Free = new();
    }

    internal readonly record struct Allocation(Block Block, long Offset, long Size)
    {
        public byte* Pointer => Block.Mapped == null ? null : Block.Mapped + Offset;
    }

    /// <summary>What the limits still let the pool reserve on one heap, and the limit that
    /// decides it (<see cref="Room"/>).</summary>
    readonly record struct Headroom(long Bytes, MemoryLimit Limit, long LimitBytes, string LimitName)
    {
        public DoesNotFitException Refuse(string work, long needed, long available) =>
            new(work, needed, Limit, LimitBytes, Math.Max(0, available), LimitName);
    }

    /// <summary>The bytes the pool may still reserve on <paramref name="heap"/>: the cap less
    /// what is reserved, or the heap's budget less the margin and less this process's usage
    /// (which counts the pool's blocks and the host's allocations), whichever is less; null
    /// where neither limit is set.</summary>
    Headroom? Room(int heap)
    {
        Headroom? room = cap is { } c
            ? new Headroom(c - BytesReserved, MemoryLimit.Cap, c, $"the memory cap ({nameof(GpuOptions)}.{nameof(GpuOptions.MemoryCapBytes)})")
            : null;
        if (budget?.Invoke(heap) is { } b)
        {
            long limit = b.Budget - (long)(b.Budget * budgetMargin);
            if (room is null || limit - b.Usage < room.Value.Bytes)
                room = new Headroom(limit - b.Usage, MemoryLimit.Budget, limit,
                                    Invariant($"heap {heap}'s budget less its {budgetMargin:0.##} margin ({nameof(GpuOptions)}.{nameof(GpuOptions.MemoryBudgetMargin)})"));
        }
        return room;
    }

    /// <summary>Throws a <see cref="DoesNotFitException"/> naming <paramref name="work"/> if
    /// <paramref name="need"/> bytes more would not fit under the cap or the budget: what the
    /// limit lets the pool still reserve plus what its blocks hold free (the budget taken as that
    /// of the heap device-local buffers live on, where activations go); where neither limit is
    /// set, under that heap's size.</summary>
    internal void EnsureFits(Func<long> need, string work)
    {
        int heap = (int)props.MemoryTypes[(int)FindType(~0u, hostVisible: false)].HeapIndex;
        // Without a cap or a budget the heap's size still bounds what could ever be allocated:
        // work needing more is refused before it allocates, not after the driver fills the heap
        // (issue 21: sizes checked before allocating). Other programs' use of the heap is unknown
        // here, so this catches the impossible, not every shortage.
        long heapBytes = (long)props.MemoryHeaps[heap].Size;
        long onHeap = blocks.Where(b => props.MemoryTypes[(int)b.TypeIndex].HeapIndex == heap).Sum(b => b.Size);
        var room = Room(heap) ?? new Headroom(heapBytes - onHeap, MemoryLimit.Heap, heapBytes, $"heap {heap}'s size");
        long available = Math.Max(0, room.Bytes) + BytesReserved - BytesInUse;
        long needed = need();
        if (needed > available) throw room.Refuse(work, needed, available);
    }

    internal Allocation Allocate(MemoryRequirements req, bool hostVisible)
    {
        uint type = FindType(req.MemoryTypeBits, hostVisible);
        long size = (long)req.Size, align = (long)Math.Max(req.Alignment, 16);
        foreach (var b in blocks)
            if (b.TypeIndex == type && TryTake(b, size, align, out long off))
                return Track(new Allocation(b, off, size));

        ReleaseEmptyBlocks();
        long maxAllocation = ctx.Capabilities.MaxMemoryAllocationSize;
        if (size > maxAllocation)
            throw GpuException.TooLarge($"a buffer of {size} bytes exceeds the device's largest allocation (maxMemoryAllocationSize {maxAllocation})");
        // Blocks shrink near the limits (TailBlockBytes); a buffer larger than a block still gets
        // one of its own where it fits.
        var room = Room((int)props.MemoryTypes[(int)type].HeapIndex);
        if (room is { } r && size > r.Bytes) throw r.Refuse("a buffer", size, r.Bytes);
        long want = room is not { Bytes: var left } || left >= blockBytes ? blockBytes : left >= TailBlockBytes ? TailBlockBytes : size;
        long blockSize = Math.Max(size, Math.Min(want, maxAllocation));
        var result = TryAllocateMemory(blockSize, type, out var mem);
        // The driver may still have room for the buffer alone.
        if (GpuException.IsOutOfMemory(result) && blockSize > size) result = TryAllocateMemory(blockSize = size, type, out mem);
        if (GpuException.IsOutOfMemory(result))
            throw GpuException.TooLarge($"out of device memory: could not allocate a {blockSize >> 20} MiB block ({result}); {BytesInUse >> 20} MiB in use");
        GpuException.Check(result, "vkAllocateMemory");
        bool visible = props.MemoryTypes[(int)type].PropertyFlags.HasFlag(MemoryPropertyFlags.HostVisibleBit);
        var block = new Block { Memory = mem, Size = blockSize, TypeIndex = type, HostVisible = visible };
        if (visible)
        {
            void* p;
            var mapped = ctx.Vk.MapMemory(ctx.Device, mem, 0, Vk.WholeSize, 0, &p);
            if (mapped != Result.Success)
            {
                // Not yet among the blocks, so nothing else would free it.
                ctx.Vk.FreeMemory(ctx.Device, mem, null);
                GpuException.Check(mapped, "vkMapMemory");
            }
            block.Mapped = (byte*)p;
        }
        block.Free.Add((0, blockSize));
        blocks.Add(block);
        BytesReserved += blockSize;
        PeakBytesReserved = Math.Max(PeakBytesReserved, BytesReserved);
        TryTake(block, size, align, out long offset);
        return Track(new Allocation(block, offset, size));
    }

    Result TryAllocateMemory(long bytes, uint type, out DeviceMemory memory)
    {
        var info = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = (ulong)bytes, MemoryTypeIndex = type };
        return ctx.Vk.AllocateMemory(ctx.Device, &info, null, out memory);
    }

    void ReleaseEmptyBlocks()
    {
        foreach (var b in blocks.Where(b => b.Free.Count == 1 && b.Free[0].Size == b.Size).ToList())
        {
            FreeBlock(b);
            blocks.Remove(b);
        }
    }

    void FreeBlock(Block b)
    {
        if (b.Mapped != null) ctx.Vk.UnmapMemory(ctx.Device, b.Memory);
        ctx.Vk.FreeMemory(ctx.Device, b.Memory, null);
        BytesReserved -= b.Size;
    }

    Allocation Track(Allocation a)
    {
        BytesInUse += a.Size;
        PeakBytesInUse = Math.Max(PeakBytesInUse, BytesInUse);
        return a;
    }
    static bool TryTake(Block b, long size, long align, out long offset)
    {
        for (int i = 0; i < b.Free.Count; i++)
        {
            var (o, s) = b.Free[i];
            long start = (o + align - 1) / align * align;
            if (start + size > o + s) continue;
            b.Free.RemoveAt(i);
            if (start + size < o + s) b.Free.Insert(i, (start + size, o + s - start - size));
            if (start > o) b.Free.Insert(i, (o, start - o));
            offset = start;
            return true;
        }
        offset = -1;
        return false;
    }

    internal void Release(Allocation a)
    {
        BytesInUse -= a.Size;
        var free = a.Block.Free;
        int i = 0;
        while (i < free.Count && free[i].Offset < a.Offset) i++;
        free.Insert(i, (a.Offset, a.Size));
        // Coalesce with the neighbours so long runs of training don't fragment the block.
        if (i + 1 < free.Count && free[i].Offset + free[i].Size == free[i + 1].Offset)
        {
            free[i] = (free[i].Offset, free[i].Size + free[i + 1].Size);
            free.RemoveAt(i + 1);
        }
        if (i > 0 && free[i - 1].Offset + free[i - 1].Size == free[i].Offset)
        {
            free[i - 1] = (free[i - 1].Offset, free[i - 1].Size + free[i].Size);
            free.RemoveAt(i);
        }
    }

    uint FindType(uint bits, bool hostVisible)
    {
        // Device-local first; host-visible buffers want coherent memory, ideally also device-local
        // (integrated GPUs, lavapipe, resizable BAR) so no staging copy is needed.
        var want = hostVisible ? MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit : MemoryPropertyFlags.DeviceLocalBit;
        int best = -1;
        for (int i = 0; i < props.MemoryTypeCount; i++)
        {
            if ((bits & (1u << i)) == 0) continue;
            var f = props.MemoryTypes[i].PropertyFlags;
            if ((f & want) != want) continue;
            if (best < 0 || (f.HasFlag(MemoryPropertyFlags.DeviceLocalBit) && !props.MemoryTypes[best].PropertyFlags.HasFlag(MemoryPropertyFlags.DeviceLocalBit)))
                best = i;
        }
        if (best < 0 && !hostVisible)
            for (int i = 0; i < props.MemoryTypeCount && best < 0; i++)
                if ((bits & (1u << i)) != 0) best = i;
        if (best < 0) throw new GpuException($"no Vulkan memory type fits (host-visible: {hostVisible})");
        return (uint)best;
    }

    public void Dispose()
    {
        foreach (var b in blocks) FreeBlock(b);
        blocks.Clear();
    }
}
