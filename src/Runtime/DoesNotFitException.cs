using static System.FormattableString;

namespace VkPrompt.Runtime;

/// <summary>Which limit on device memory work ran into (<see cref="DoesNotFitException.Limit"/>).</summary>
public enum MemoryLimit
{
    /// <summary>The host's cap on what the context reserves (<see cref="GpuOptions.MemoryCapBytes"/>).</summary>
    Cap,
    /// <summary>A heap's budget as VK_EXT_memory_budget reports it, less <see cref="GpuOptions.MemoryBudgetMargin"/>
    /// (<see cref="DevicePlan.MemoryBudget"/>).</summary>
    Budget,
}

/// <summary>Work (a training step, a scoring batch, a decoder) needs more device memory than a
/// limit leaves it: <see cref="Limit"/> says which, <see cref="LimitBytes"/> its size and
/// <see cref="NeededBytes"/> what the work needed. Thrown before the work allocated anything, or
/// after what it had allocated was freed again, so the context is as it was: smaller work (a
/// smaller batch, shorter inputs) may run at once.</summary>
public sealed class DoesNotFitException : GpuException
{
    /// <summary>Bytes of new device memory the work needed.</summary>
    public long NeededBytes { get; }
    /// <summary>The size of the limit: the cap, or the heap's budget less the margin.</summary>
    public long LimitBytes { get; }
    /// <summary>Bytes the limit still left when the work asked.</summary>
    public long AvailableBytes { get; }
    /// <summary>Which limit the work ran into.</summary>
    public MemoryLimit Limit { get; }
    /// <summary>What the work was, as the message names it (e.g. "a training step of batch 6 x 64 input tokens (+8 prompt) x 16 target tokens").</summary>
    public string Work { get; }

    DoesNotFitException(string message, string work, long neededBytes, MemoryLimit limit, long limitBytes, long availableBytes, string limitName, Exception? inner)
        : base(message, inner)
    {
        DoesNotFit = true;
        Work = work;
        NeededBytes = neededBytes;
        Limit = limit;
        LimitBytes = limitBytes;
        AvailableBytes = availableBytes;
        LimitName = limitName;
    }

    /// <summary>How the message names the limit, e.g. "the memory cap (GpuOptions.MemoryCapBytes)".</summary>
    internal string LimitName { get; }

    /// <param name="work">what needed the memory, for the message.</param>
    /// <param name="neededBytes">what it needed.</param>
    /// <param name="limit">which limit it ran into.</param>
    /// <param name="limitBytes">that limit's size.</param>
    /// <param name="availableBytes">what the limit still left.</param>
    /// <param name="limitName">how the message names the limit.</param>
    internal DoesNotFitException(string work, long neededBytes, MemoryLimit limit, long limitBytes, long availableBytes, string limitName)
        : this($"{work} needs {Bytes(neededBytes)} of device memory, more than {limitName} of {Bytes(limitBytes)} leaves it ({Bytes(availableBytes)})",
               work, neededBytes, limit, limitBytes, availableBytes, limitName, null)
    {
    }

    /// <summary>The same refusal for the whole of <paramref name="work"/>, which needed
    /// <paramref name="neededBytes"/>: this, one of its allocations, was refused while it was
    /// built (what it had allocated is freed again).</summary>
    internal DoesNotFitException For(string work, long neededBytes) =>
        new($"{work} needs {Bytes(neededBytes)} of device memory, and one of its buffers did not fit: {Message}",
            work, neededBytes, Limit, LimitBytes, AvailableBytes, LimitName, this);

    /// <summary>"5242880 bytes (5.0 MiB)": exact, and readable.</summary>
    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => Invariant($"{n} bytes ({n / (double)(1L << 30):0.0} GiB)"),
        >= 1L << 20 => Invariant($"{n} bytes ({n / (double)(1L << 20):0.0} MiB)"),
        >= 1L << 10 => Invariant($"{n} bytes ({n / 1024.0:0.0} KiB)"),
        _ => $"{n} bytes",
    };
}
