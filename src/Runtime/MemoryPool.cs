using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>
/// Sub-allocates buffers from a few large VkDeviceMemory blocks: drivers cap the number of
/// allocations (often 4096) and each one is slow, so tensors never get their own.
/// First-fit over a sorted free list per block. A block that holds nothing is given back to the
/// driver when a buffer fits in no block, so memory freed by the passes of one batch shape is not
/// held beside the larger blocks of the next (data of varying length changes shape every few
/// steps); otherwise blocks live as long as the pool.
/// </summary>
internal sealed unsafe class MemoryPool : IDisposable
{
    const long DefaultBlockBytes = 256L << 20;

    readonly GpuContext ctx;
    readonly long blockBytes;
    readonly List<Block> blocks = new();
    readonly PhysicalDeviceMemoryProperties props;

    public long BytesInUse { get; private set; }
    public long PeakBytesInUse { get; private set; }
    public long BytesReserved => blocks.Sum(b => b.Size);
    public int BlockCount => blocks.Count;

    /// <param name="ctx">the context whose device the memory is allocated on.</param>
    /// <param name="blockBytes">the size of a shared block; a larger buffer gets a block of its own.</param>
    internal MemoryPool(GpuContext ctx, long blockBytes = DefaultBlockBytes)
    {
        this.ctx = ctx;
        this.blockBytes = blockBytes;
        ctx.Vk.GetPhysicalDeviceMemoryProperties(ctx.PhysicalDevice, out props);
    }

    /// <summary>Resets the peak so one phase (a training step, say) can be measured alone.</summary>
    public void ResetPeak() => PeakBytesInUse = BytesInUse;

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

    internal Allocation Allocate(MemoryRequirements req, bool hostVisible)
    {
        uint type = FindType(req.MemoryTypeBits, hostVisible);
        long size = (long)req.Size, align = (long)Math.Max(req.Alignment, 16);
        foreach (var b in blocks)
            if (b.TypeIndex == type && TryTake(b, size, align, out long off))
                return Track(new Allocation(b, off, size));

        ReleaseEmptyBlocks();
        long blockSize = Math.Max(size, Math.Min(blockBytes, ctx.Capabilities.MaxMemoryAllocationSize));
        if (size > ctx.Capabilities.MaxMemoryAllocationSize)
            throw GpuException.TooLarge($"a buffer of {size} bytes exceeds the device's largest allocation (maxMemoryAllocationSize {ctx.Capabilities.MaxMemoryAllocationSize})");
        var info = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = (ulong)blockSize, MemoryTypeIndex = type };
        var r = ctx.Vk.AllocateMemory(ctx.Device, &info, null, out var mem);
        if (GpuException.IsOutOfMemory(r))
            throw GpuException.TooLarge($"out of device memory: could not allocate a {blockSize >> 20} MiB block ({r}); {BytesInUse >> 20} MiB in use");
        GpuException.Check(r, "vkAllocateMemory");
        bool visible = props.MemoryTypes[(int)type].PropertyFlags.HasFlag(MemoryPropertyFlags.HostVisibleBit);
        var block = new Block { Memory = mem, Size = blockSize, TypeIndex = type, HostVisible = visible };
        if (visible)
        {
            void* p;
            GpuException.Check(ctx.Vk.MapMemory(ctx.Device, mem, 0, Vk.WholeSize, 0, &p), "vkMapMemory");
            block.Mapped = (byte*)p;
        }
        block.Free.Add((0, blockSize));
        blocks.Add(block);
        TryTake(block, size, align, out long offset);
        return Track(new Allocation(block, offset, size));
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
