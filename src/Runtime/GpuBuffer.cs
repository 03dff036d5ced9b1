using System.Runtime.InteropServices;
using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace VkPrompt.Runtime;

/// <summary>
/// A storage buffer on the device, sub-allocated from the context's <see cref="MemoryPool"/>.
/// Sizes are in bytes; the typed helpers copy whole spans. Host access goes through a mapped
/// pointer where the memory is host-visible and through a staging copy elsewhere.
/// </summary>
internal sealed unsafe class GpuBuffer : IDisposable
{
    readonly GpuContext ctx;
    readonly MemoryPool.Allocation allocation;
    bool disposed;

    public Buffer Handle { get; }
    public long Bytes { get; }
    public string Name { get; }

    /// <summary>How the buffer's elements are stored where it holds activations
    /// (<see cref="Activations"/>); fp32 for every other buffer, including weight tables, whose
    /// halves and bytes <see cref="SplitTensor"/> describes. Kernels choose their load and store
    /// paths from it, and <see cref="CommandGraph"/> refuses a 16-bit buffer at a binding whose
    /// kernel does not declare it may read one (<see cref="KernelLayout.HalfBindings"/>).</summary>
    public ActivationPrecision Storage { get; private init; }

    /// <summary>Elements the buffer holds as <see cref="Storage"/> stores them.</summary>
    public long StoredElements => Bytes / Storage.ElementBytes();

    /// <summary>A buffer of <paramref name="elements"/> activations stored as
    /// <paramref name="storage"/> (<see cref="ActivationPrecisions.Bytes"/>).</summary>
    /// <exception cref="GpuException">16 bits, and the device lacks 16-bit storage.</exception>
    public static GpuBuffer Activations(GpuContext ctx, long elements, ActivationPrecision storage, string name = "", bool hostVisible = false)
    {
        storage.Require(ctx.Capabilities);
        return new GpuBuffer(ctx, storage.Bytes(Math.Max(1, elements)), name, hostVisible) { Storage = storage };
    }

    public GpuBuffer(GpuContext ctx, long bytes, string name = "", bool hostVisible = false)
    {
        if (bytes <= 0) throw new ArgumentOutOfRangeException(nameof(bytes), "a buffer needs at least one byte");
        this.ctx = ctx;
        using var _ = ctx.Enter();
        Bytes = bytes;
        Name = name;
        var info = new BufferCreateInfo
        {
            SType = StructureType.BufferCreateInfo,
            Size = (ulong)bytes,
            Usage = BufferUsageFlags.StorageBufferBit | BufferUsageFlags.TransferSrcBit | BufferUsageFlags.TransferDstBit,
            SharingMode = SharingMode.Exclusive,
        };
        if (bytes > ctx.Capabilities.MaxMemoryAllocationSize)
            throw GpuException.TooLarge($"buffer {name} of {bytes} bytes exceeds the device's largest allocation (maxMemoryAllocationSize {ctx.Capabilities.MaxMemoryAllocationSize})");
        var created = ctx.Vk.CreateBuffer(ctx.Device, &info, null, out var buffer);
        if (GpuException.IsOutOfMemory(created))
            throw GpuException.TooLarge($"out of device memory: buffer {name} of {bytes >> 20} MiB could not be created ({created}); {ctx.Memory.BytesInUse >> 20} MiB in use");
        GpuException.Check(created, "vkCreateBuffer");
        Handle = buffer;
        ctx.Vk.GetBufferMemoryRequirements(ctx.Device, buffer, out var req);
        try
        {
            allocation = ctx.Memory.Allocate(req, hostVisible);
            GpuException.Check(ctx.Vk.BindBufferMemory(ctx.Device, buffer, allocation.Block.Memory, (ulong)allocation.Offset), "vkBindBufferMemory");
        }
        catch
        {
            ctx.Vk.DestroyBuffer(ctx.Device, buffer, null);
            throw;
        }
    }

    /// <summary>Creates a buffer holding a copy of <paramref name="data"/>.</summary>
    public static GpuBuffer From<T>(GpuContext ctx, ReadOnlySpan<T> data, string name = "") where T : unmanaged
    {
        var b = new GpuBuffer(ctx, Math.Max(1, data.Length) * sizeof(T), name);
        try { b.Upload(data); }
        catch
        {
            b.Dispose();
            throw;
        }
        return b;
    }

    public int Length<T>() where T : unmanaged => (int)(Bytes / sizeof(T));

    /// <summary>Writes <paramref name="data"/> at element offset <paramref name="offset"/>.</summary>
    public void Upload<T>(ReadOnlySpan<T> data, long offset = 0) where T : unmanaged
    {
        using var _ = ctx.Enter();
        var bytes = MemoryMarshal.AsBytes(data);
        long at = offset * sizeof(T);
        CheckRange(at, bytes.Length);
        if (bytes.Length == 0) return;
        if (allocation.Pointer != null)
        {
            bytes.CopyTo(new Span<byte>(allocation.Pointer + at, bytes.Length));
            return;
        }
        using var staging = new GpuBuffer(ctx, bytes.Length, "staging", hostVisible: true);
        staging.Upload(data);
        Copy(staging, 0, this, at, bytes.Length);
    }

    /// <summary>Reads elements starting at element offset <paramref name="offset"/>.</summary>
    public void Download<T>(Span<T> data, long offset = 0) where T : unmanaged
    {
        using var _ = ctx.Enter();
        var bytes = MemoryMarshal.AsBytes(data);
        long at = offset * sizeof(T);
        CheckRange(at, bytes.Length);
        if (bytes.Length == 0) return;
        if (allocation.Pointer != null)
        {
            new ReadOnlySpan<byte>(allocation.Pointer + at, bytes.Length).CopyTo(bytes);
            return;
        }
        using var staging = new GpuBuffer(ctx, bytes.Length, "staging", hostVisible: true);
        Copy(this, at, staging, 0, bytes.Length);
        staging.Download(data);
    }

    public T[] Download<T>() where T : unmanaged
    {
        var data = new T[Length<T>()];
        Download<T>(data);
        return data;
    }

    static void Copy(GpuBuffer src, long srcOffset, GpuBuffer dst, long dstOffset, long bytes)
    {
        src.ctx.SubmitAndWait(cb =>
        {
            var region = new BufferCopy((ulong)srcOffset, (ulong)dstOffset, (ulong)bytes);
            src.ctx.Vk.CmdCopyBuffer(cb, src.Handle, dst.Handle, 1, &region);
        });
    }

    void CheckRange(long at, long length)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (at < 0 || at + length > Bytes)
            throw new ArgumentOutOfRangeException(nameof(length), $"{Name}: range [{at}, {at + length}) is outside the buffer's {Bytes} bytes");
    }

    public void Dispose()
    {
        if (disposed) return;
        using var _ = ctx.Enter();
        disposed = true;
        ctx.Vk.DestroyBuffer(ctx.Device, Handle, null);
        ctx.Memory.Release(allocation);
    }

    public override string ToString() => $"{Name} ({Bytes} bytes)";
}
