namespace VkPrompt.Runtime.Kernels;

/// <summary>The fp16 copies of fp32 activations (<see cref="ToHalfKernel"/>) that the matrix-unit
/// products of one command graph read in place of the fp32 ones
/// (<see cref="GpuOptions.CooperativeMatrixHalfActivations"/>); the graph's
/// <see cref="CommandGraph.State{T}"/>, so its buffers live as long as the ops that read them.
/// One copy is current at a time: a product whose A is the same range of the same buffer, not
/// written since, reads it again (T5's q, k and v, or wi_0 and wi_1, share their normed input),
/// any other converts its A into the buffer afresh, the command graph putting the barriers
/// between the reads of one copy and the writing of the next.</summary>
internal sealed class HalfCopies : IDisposable
{
    // Every buffer made: ops recorded earlier read the smaller ones a larger one replaced.
    readonly List<GpuBuffer> buffers = new();
    (GpuBuffer Source, long Start, long Length, int Op)? current;

    /// <summary>A buffer holding x[start .. start + length) as fp16 from element 0, converted
    /// by an op appended now unless the current copy already holds it.</summary>
    public GpuBuffer Of(CommandGraph g, GpuBuffer x, long start, long length)
    {
        if (current is { } c && c.Source == x && c.Start == start && c.Length == length && !g.Writes(x, c.Op + 1))
            return buffers[^1];
        long bytes = ToHalfKernel.OutputBytes(length);
        if (buffers.Count == 0 || buffers[^1].Bytes < bytes) buffers.Add(new GpuBuffer(g.Context, bytes, "fp16 activations"));
        current = (x, start, length, g.OpCount);
        ToHalfKernel.Run(g, x, start, buffers[^1], length);
        return buffers[^1];
    }

    public void Dispose()
    {
        foreach (var b in buffers) b.Dispose();
    }
}
