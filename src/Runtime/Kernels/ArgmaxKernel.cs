namespace VkPrompt.Runtime.Kernels;

/// <summary>Greedy decoding: ids[r] = argmax_j logits[r, j] over rows of <c>vocab</c> floats.
/// Ties go to the lowest index, as torch.argmax on CPU; NaN counts as the largest value (as in
/// torch) and −0 equals +0.</summary>
internal static class ArgmaxKernel
{
    static readonly KernelLayout Layout = new([Access.Read, Access.Write], 8);

    readonly record struct Push(uint Rows, uint Vocab);

    public static void Forward(CommandGraph g, GpuBuffer logits, GpuBuffer ids, int rows, int vocab)
    {
        Rows.CheckShape("argmax", rows, vocab, nameof(vocab));
        BufferChecks.Require("argmax", logits, (long)rows * vocab, "logits [rows, vocab]");
        BufferChecks.Require("argmax", ids, rows, "ids [rows]");
        int local = Rows.LocalSize(g.Context);
        var k = g.Context.Kernel("argmax", Layout, local);
        g.Dispatch(k, Rows.Groups(rows), new Push((uint)rows, (uint)vocab), logits, ids);
    }
}
