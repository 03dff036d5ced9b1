using System.Numerics;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.EmbeddingKernel"/>. The table is the whole
/// [vocab, dim] tensor, row-major; generic so tests can run it in double.</summary>
internal static class EmbeddingReference
{
    /// <summary>y [batch, P + length, dim]; ids outside [0, vocab) and prompt indices outside
    /// [0, numPrompts) give zero rows, as on the GPU. prompts and promptIndex may be empty when P = 0.</summary>
    public static void Forward<T>(ReadOnlySpan<T> table, ReadOnlySpan<int> ids, ReadOnlySpan<T> prompts, ReadOnlySpan<int> promptIndex,
                                  Span<T> y, int batch, int length, int promptLength, int dim) where T : IFloatingPointIeee754<T>
    {
        int vocab = table.Length / dim;
        int numPrompts = promptLength > 0 ? prompts.Length / (promptLength * dim) : 0;
        int seq = promptLength + length;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seq; t++)
            {
                var row = y.Slice((b * seq + t) * dim, dim);
                int index = t < promptLength ? promptIndex[b] : ids[b * length + t - promptLength];
                if (t < promptLength && index >= 0 && index < numPrompts)
                    prompts.Slice((index * promptLength + t) * dim, dim).CopyTo(row);
                else if (t >= promptLength && index >= 0 && index < vocab)
                    table.Slice(index * dim, dim).CopyTo(row);
                else
                    row.Clear();
            }
    }

    /// <summary>dPrompts [numPrompts, P, dim] = per prompt, the sum of dX[b, :P] over the examples
    /// using it, summed in batch order like the shader; numPrompts = dPrompts.Length / (P dim).</summary>
    public static void PromptGradient<T>(ReadOnlySpan<T> dX, ReadOnlySpan<int> promptIndex, Span<T> dPrompts,
                                         int batch, int length, int promptLength, int dim) where T : IFloatingPointIeee754<T>
    {
        int promptSize = promptLength * dim;
        int exampleSize = (promptLength + length) * dim;
        int numPrompts = dPrompts.Length / promptSize;
        dPrompts[..(numPrompts * promptSize)].Clear();
        for (int b = 0; b < batch; b++)
        {
            if ((uint)promptIndex[b] >= (uint)numPrompts) continue;
            var dst = dPrompts.Slice(promptIndex[b] * promptSize, promptSize);
            var src = dX.Slice(b * exampleSize, promptSize);
            for (int i = 0; i < promptSize; i++) dst[i] += src[i];
        }
    }
}
