namespace VkPrompt.Runtime.Kernels;

/// <summary>
/// Token embedding with soft prompts prepended, and the prompts' gradient. Each example b picks
/// its own prompt promptIndex[b] from prompts [numPrompts, P, d], so several tasks (or the members
/// of a prompt ensemble) share one batch. P = 0 is a plain embedding (the decoder input).
/// </summary>
internal static class EmbeddingKernel
{
    static readonly KernelLayout ForwardLayout = new([Access.Read, Access.Read, Access.Read, Access.Read, Access.Write], 36);
    // embedding_int8.comp: the chunk's row scales at binding 5.
    static readonly KernelLayout Int8ForwardLayout = new([Access.Read, Access.Read, Access.Read, Access.Read, Access.Write, Access.Read], 36);
    static readonly KernelLayout GradientLayout = new([Access.Read, Access.Read, Access.Write], 20);

    readonly record struct ForwardPush(uint Batch, uint Len, uint PromptLen, uint Dim, uint FirstRow, uint Rows, uint Vocab, uint WriteShared,
                                       uint NumPrompts);

    readonly record struct GradientPush(uint Batch, uint Len, uint PromptLen, uint Dim, uint NumPrompts);

    /// <summary>
    /// y [batch, P + len, d]: row (b, t) = prompts[promptIndex[b], t] for t &lt; P, else
    /// table[ids[b, t - P]]. ids and promptIndex are int32; numPrompts is prompts' length / (P d).
    /// ids outside [0, vocab) and prompt indices outside [0, numPrompts) give zero rows.
    /// prompts and promptIndex may be null when P = 0. One dispatch per table chunk. The table
    /// may be stored as fp16 or bf16, or as int8 rows with a scale each
    /// (<see cref="SplitTensor.Precision"/>); its rows are widened to fp32 exactly.
    /// </summary>
    /// <exception cref="GpuException">The table is 16-bit and the device lacks 16-bit storage.</exception>
    public static void Forward(CommandGraph g, SplitTensor table, GpuBuffer ids, GpuBuffer? prompts, GpuBuffer? promptIndex,
                               GpuBuffer y, int batch, int length, int promptLength, int dim)
    {
        const string name = "embedding";
        BufferChecks.NonNegative(name, (batch, nameof(batch)), (length, nameof(length)), (promptLength, nameof(promptLength)), (dim, nameof(dim)));
        if (table.Context != g.Context)
            throw new ArgumentException($"{name}: table {table.Name} lives on another GpuContext", nameof(table));
        if (dim != table.Cols)
            throw new ArgumentException($"{name}: dim {dim} differs from the table's {table.Cols} columns", nameof(dim));
        BufferChecks.Require(name, ids, (long)batch * length, "ids [batch, length]");
        BufferChecks.Require(name, y, (long)batch * (promptLength + length) * dim, "y [batch, P + length, dim]");
        if (promptLength > 0)
        {
            if (prompts is null || promptIndex is null)
                throw new ArgumentException($"{name}: prompt length {promptLength} needs prompts and promptIndex");
            BufferChecks.Require(name, prompts, (long)promptLength * dim, "prompts [numPrompts, P, dim]");
            BufferChecks.Require(name, promptIndex, batch, "promptIndex [batch]");
        }
        // With P = 0 the shader never reads the prompt bindings, but every binding needs a valid
        // buffer; ids stands in for both (read-only, so no hazard is added).
        var promptBuffer = promptLength > 0 ? prompts! : ids;
        var indexBuffer = promptLength > 0 ? promptIndex! : ids;
        long numPrompts = promptLength > 0 ? promptBuffer.Length<float>() / ((long)promptLength * dim) : 0;

        table.Precision.Require(g.Context.Capabilities);
        var k = table.Precision switch
        {
            WeightPrecision.Fp32 => g.Context.Kernel(name, ForwardLayout, Grid.LinearSize),
            WeightPrecision.Int8 => g.Context.Kernel("embedding_int8", Int8ForwardLayout, Grid.LinearSize),
            _ => g.Context.Kernel("embedding_half", ForwardLayout, Grid.LinearSize, table.Precision == WeightPrecision.Bf16 ? 1 : 0),
        };
        var groups = Grid.Linear((long)batch * (promptLength + length) * dim);
        for (int c = 0; c < table.Chunks.Count; c++)
        {
            var (chunk, firstRow, rows) = table.Chunks[c];
            var push = new ForwardPush((uint)batch, (uint)length, (uint)promptLength, (uint)dim, (uint)firstRow, (uint)rows,
                                       (uint)table.Rows, c == 0 ? 1u : 0u, (uint)numPrompts);
            if (table.Precision == WeightPrecision.Int8) g.Dispatch(k, groups, push, chunk, ids, promptBuffer, indexBuffer, y, table.Scales[c]);
            else g.Dispatch(k, groups, push, chunk, ids, promptBuffer, indexBuffer, y);
        }
    }

    /// <summary>
    /// dPrompts[k, p] = sum of dX[b, p] over the examples b with promptIndex[b] = k, overwriting
    /// dPrompts [numPrompts, P, d]; numPrompts is its length / (P d). dX is the gradient of the
    /// embedding output [batch, P + length, d].
    /// </summary>
    public static void PromptGradient(CommandGraph g, GpuBuffer dX, GpuBuffer promptIndex, GpuBuffer dPrompts,
                                      int batch, int length, int promptLength, int dim)
    {
        const string name = "embedding_backward";
        BufferChecks.NonNegative(name, (batch, nameof(batch)), (length, nameof(length)));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(promptLength);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        BufferChecks.Require(name, dX, (long)batch * (promptLength + length) * dim, "dX [batch, P + length, dim]");
        BufferChecks.Require(name, promptIndex, batch, "promptIndex [batch]");
        long numPrompts = dPrompts.Length<float>() / ((long)promptLength * dim);
        if (numPrompts == 0)
            throw new ArgumentException($"{name}: dPrompts ({dPrompts.Bytes} bytes) cannot hold one [{promptLength}, {dim}] prompt", nameof(dPrompts));
        var k = g.Context.Kernel(name, GradientLayout, Grid.LinearSize);
        g.Dispatch(k, Grid.Linear(numPrompts * promptLength * dim),
                   new GradientPush((uint)batch, (uint)length, (uint)promptLength, (uint)dim, (uint)numPrompts), dX, promptIndex, dPrompts);
    }
}
