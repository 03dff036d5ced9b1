using Silk.NET.Vulkan;
using Semaphore = Silk.NET.Vulkan.Semaphore;

namespace VkPrompt.Runtime;

/// <summary>
/// A point on a context's timeline (a Vulkan timeline semaphore): the work submitted up to it is
/// complete once the semaphore holds <see cref="Value"/>. Submitting returns one at once; the host
/// polls it (<see cref="IsComplete"/>, from any thread), waits on it with a timeout, or puts
/// <see cref="Semaphore"/> and <see cref="Value"/> in the wait list of its own vkQueueSubmit
/// (<see cref="AsWait"/>). The default ticket is complete: work that ran on the CPU returns it.
/// </summary>
public readonly struct GpuTicket : IEquatable<GpuTicket>
{
    readonly GpuTimeline? timeline;

    internal GpuTicket(GpuTimeline timeline, ulong value) => (this.timeline, Value) = (timeline, value);

    /// <summary>The context's timeline semaphore (a null handle for the default, complete ticket).</summary>
    public Semaphore Semaphore => timeline?.Semaphore ?? default;

    /// <summary>The value <see cref="Semaphore"/> reaches when this ticket's work is complete.</summary>
    public ulong Value { get; }

    /// <summary>Whether the work is complete; never blocks, callable from any thread.</summary>
    public bool IsComplete => timeline is null || timeline.Reached(Value);

    /// <summary>Blocks the calling thread until the work is complete or <paramref name="timeout"/>
    /// passes; returns whether it completed. Callable from any thread.</summary>
    public bool Wait(TimeSpan timeout) => timeline is null || timeline.Wait(Value, timeout);

    /// <summary>Blocks the calling thread until the work is complete.</summary>
    public void Wait()
    {
        if (timeline is not null) timeline.Wait(Value, Timeout.InfiniteTimeSpan);
    }

    /// <summary>This ticket as an entry of another submit's wait list (a later submit of the
    /// library, or the host's, through <see cref="Semaphore"/>); null for the default ticket,
    /// which needs no wait.</summary>
    public GpuWait? AsWait() => timeline is null ? null : new GpuWait(timeline.Semaphore, Value);

    /// <inheritdoc/>
    public bool Equals(GpuTicket other) => timeline == other.timeline && Value == other.Value;
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is GpuTicket t && Equals(t);
    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Semaphore.Handle, Value);
    /// <inheritdoc/>
    public override string ToString() => timeline is null ? "ticket (complete)" : $"ticket {Value} on semaphore 0x{Semaphore.Handle:x}";
}

/// <summary>A host's timeline value a submit waits for before its work starts: the library's
/// work then begins only after the host's (or another context's) work that signals
/// <paramref name="Semaphore"/> to <paramref name="Value"/>.</summary>
/// <param name="Semaphore">A timeline semaphore of the same device.</param>
/// <param name="Value">The value to wait for.</param>
public readonly record struct GpuWait(Semaphore Semaphore, ulong Value);

/// <summary>
/// A context's timeline semaphore: each submit signals the next value, so a value is a ticket for
/// everything submitted up to it. Reading and waiting are thread-safe in Vulkan (the semaphore
/// needs no external synchronisation for them), which is why a ticket may be polled from another
/// thread than the one that submits.
/// </summary>
internal sealed unsafe class GpuTimeline : IDisposable
{
    readonly Vk vk;
    readonly Device device;
    volatile bool disposed;

    public Semaphore Semaphore { get; }

    /// <summary>The value the last submit signals (0 before any).</summary>
    public ulong LastSubmitted { get; private set; }

    public GpuTimeline(Vk vk, Device device)
    {
        (this.vk, this.device) = (vk, device);
        var type = new SemaphoreTypeCreateInfo { SType = StructureType.SemaphoreTypeCreateInfo, SemaphoreType = SemaphoreType.Timeline, InitialValue = 0 };
        var info = new SemaphoreCreateInfo { SType = StructureType.SemaphoreCreateInfo, PNext = &type };
        GpuException.Check(vk.CreateSemaphore(device, &info, null, out var semaphore), "vkCreateSemaphore (timeline)");
        Semaphore = semaphore;
    }

    /// <summary>The value the next submit will signal, and the ticket for it.</summary>
    public GpuTicket Next() => new(this, ++LastSubmitted);

    /// <summary>Forgets a value taken by <see cref="Next"/> whose submit failed, so no ticket
    /// waits for a value nothing will signal.</summary>
    public void Unsubmit(GpuTicket ticket)
    {
        if (ticket.Value == LastSubmitted) LastSubmitted--;
    }

    public ulong Current
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            ulong value;
            GpuException.Check(vk.GetSemaphoreCounterValue(device, Semaphore, &value), "vkGetSemaphoreCounterValue");
            return value;
        }
    }

    public bool Reached(ulong value) => Current >= value;

    public bool Wait(ulong value, TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var semaphore = Semaphore;
        var info = new SemaphoreWaitInfo { SType = StructureType.SemaphoreWaitInfo, SemaphoreCount = 1, PSemaphores = &semaphore, PValues = &value };
        ulong ns = timeout == Timeout.InfiniteTimeSpan ? ulong.MaxValue : (ulong)Math.Max(0, timeout.Ticks) * 100;
        var r = vk.WaitSemaphores(device, &info, ns);
        if (r == Result.Timeout) return false;
        GpuException.Check(r, "vkWaitSemaphores");
        return true;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        vk.DestroySemaphore(device, Semaphore, null);
    }
}

/// <summary>A range of a device buffer of the library's, for a host's own commands (a
/// vkCmdCopyBuffer out of it, chained on a <see cref="GpuTicket"/>): read it only after the
/// ticket of the work that writes it completes, and write it never.</summary>
/// <param name="Buffer">The VkBuffer.</param>
/// <param name="Offset">Where the range starts in it, in bytes.</param>
/// <param name="Bytes">Its length in bytes.</param>
public readonly record struct GpuBufferRange(Silk.NET.Vulkan.Buffer Buffer, ulong Offset, ulong Bytes);
