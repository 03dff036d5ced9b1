namespace VkPrompt.Runtime.Kernels;

/// <summary>The fp16 copies of fp32 operands (<see cref="ToHalfKernel"/>) that the matrix-unit
/// products of one command graph read in place of the fp32 ones
/// (<see cref="GpuOptions.MatrixUnitsHalfActivations"/>); activations already kept in 16 bits
/// (<see cref="GpuBuffer.Storage"/>) are read straight and never copied here; the graph's
/// <see cref="CommandGraph.State{T}"/>, so its buffers live as long as the ops that read them.
/// Each operand position (A, and B for products of two activations) has one current copy: a
/// product whose operand is the same range of the same buffer, not written since, reads it again
/// (T5's q, k and v, or wi_0 and wi_1, share their normed input), any other converts its operand
/// into the position's buffer afresh, the command graph putting the barriers between the reads of
/// one copy and the writing of the next.</summary>
internal sealed class HalfCopies : IDisposable
{
    internal enum Operand { A, B }

    sealed class Slot
    {
        // Every buffer made: ops recorded earlier read the smaller ones a larger one replaced.
        public readonly List<GpuBuffer> Buffers = new();
        public (GpuBuffer Source, long Start, long Length, int Op)? Current;
    }

    readonly Slot[] slots = [new(), new()];

    /// <summary>A buffer holding x[start .. start + length) as fp16 from element 0, converted
    /// by an op appended now unless the operand's current copy already holds it.</summary>
    public GpuBuffer Of(CommandGraph g, Operand operand, GpuBuffer x, long start, long length)
    {
        var slot = slots[(int)operand];
        if (slot.Current is { } c && c.Source == x && c.Start == start && c.Length == length && !g.Writes(x, c.Op + 1))
            return slot.Buffers[^1];
        long bytes = ToHalfKernel.OutputBytes(length);
        if (slot.Buffers.Count == 0 || slot.Buffers[^1].Bytes < bytes) slot.Buffers.Add(new GpuBuffer(g.Context, bytes, $"fp16 copy of {operand}"));
        slot.Current = (x, start, length, g.OpCount);
        ToHalfKernel.Run(g, x, start, slot.Buffers[^1], length);
        return slot.Buffers[^1];
    }

    public void Dispose()
    {
        foreach (var b in slots.SelectMany(s => s.Buffers)) b.Dispose();
    }
}
