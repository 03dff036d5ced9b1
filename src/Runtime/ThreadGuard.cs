namespace VkPrompt.Runtime;

/// <summary>
/// Enforces that a <see cref="GpuContext"/> is used by one thread at a time: each entry point that
/// touches the context (kernels, buffers, command graphs, submits, uploads, dispose) holds it for
/// the length of the call (<c>using var _ = ctx.Enter();</c>). The first entry takes the
/// thread's id with one compare-exchange; nested entries on the same thread only count. A
/// second thread entering while it is held gets an <see cref="InvalidOperationException"/> at
/// once, not a corrupted command pool or memory pool (Vulkan requires both externally
/// synchronised). Handing the context to another thread between calls is fine.
/// </summary>
internal sealed class ThreadGuard
{
    /// <summary>What the exception says: the contract, and which calls may cross threads.</summary>
    internal const string Contract = "a GpuContext is used by one thread at a time; polling or waiting on a GpuTicket (IsComplete, Wait) may cross threads";

    int owner;   // the managed thread id holding the guard, 0 when free
    int depth;   // touched only by the owner

    /// <summary>Holds the guard until the returned scope is disposed.</summary>
    /// <exception cref="InvalidOperationException">Another thread holds it.</exception>
    public Scope Enter()
    {
        int me = Thread.CurrentThread.ManagedThreadId;
        if (Volatile.Read(ref owner) != me)
        {
            int other = Interlocked.CompareExchange(ref owner, me, 0);
            if (other != 0)
                throw new InvalidOperationException($"{Contract}: thread {me} called it while thread {other} was in a call on it. " +
                                                    "Use one context per thread, or hand it over only between calls.");
        }
        depth++;
        return new Scope(this);
    }

    void Exit()
    {
        if (--depth == 0) Volatile.Write(ref owner, 0);
    }

    /// <summary>One entry; a ref struct, so it cannot outlive the call or cross an await.</summary>
    public readonly ref struct Scope(ThreadGuard guard)
    {
        public void Dispose() => guard.Exit();
    }
}
