using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

/// <summary>
/// Builds the device work of a batch shape (a training step, a scoring pass, a decoder) within
/// the device's memory limits, all or nothing: the memory it will allocate is counted first and
/// checked against the cap and the heaps' budgets (<see cref="GpuOptions.MemoryCapBytes"/>,
/// <see cref="DevicePlan.MemoryBudget"/>), so work that does not fit is refused with a
/// <see cref="DoesNotFitException"/> before it allocates anything; and if building fails anyway
/// (a buffer that found no room in a fragmented pool, the driver out of memory), all it had made
/// is disposed again. Either way the context is left as it was, and smaller work can run at once.
/// </summary>
internal static class WorkMemory
{
    /// <summary>What <paramref name="build"/> makes on <paramref name="weights"/>' backend, after
    /// the check; a refused allocation while building surfaces as a <see cref="DoesNotFitException"/>
    /// naming <paramref name="work"/> and its whole need.</summary>
    /// <param name="weights">the model the work runs.</param>
    /// <param name="work">what the work is, for the message ("a training step of batch 6 x ...").</param>
    /// <param name="build">makes the work from the weights it is given, on their backend: it also
    /// runs on weights of a <see cref="TraceBackend"/> to count what it allocates (<see cref="Bytes"/>),
    /// so what it makes comes from <c>w.Backend</c>, and the tensors it captures from elsewhere
    /// are only passed to ops (which the trace backend ignores).</param>
    public static T Build<T>(T5Weights weights, string work, Func<T5Weights, T> build)
    {
        long? counted = null;
        long Need() => counted ??= Bytes(weights, build);
        var be = weights.Backend;
        be.EnsureFits(Need, work);
        try { return be.AllOrNothing(() => build(weights)); }
        catch (DoesNotFitException e) { throw e.For(work, Need()); }
    }

    /// <summary>Bytes of device memory <paramref name="build"/> allocates, counted by running it
    /// on a <see cref="TraceBackend"/> with weights of <paramref name="weights"/>' shapes and
    /// precision that hold no memory, attention fused where their backend would fuse it, and the
    /// fp16 copies its device's matrix-unit products make counted.</summary>
    public static long Bytes<T>(T5Weights weights, Func<T5Weights, T> build)
    {
        using var be = new TraceBackend(weights.Backend.FusesAttention, plan: (weights.Backend as GpuBackend)?.Context.Plan) { Activations = weights.Backend.Activations };
        using var traced = T5Weights.Unloaded(weights.Config, be, weights.Precision, weights.Layers);
        long before = be.BytesAllocated;
        build(traced);
        return be.BytesAllocated - before;
    }
}
