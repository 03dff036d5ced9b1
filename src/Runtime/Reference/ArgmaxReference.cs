namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.ArgmaxKernel"/>: first index of the row's maximum,
/// NaN above every number, −0 equal to +0.</summary>
internal static class ArgmaxReference
{
    public static void Forward(ReadOnlySpan<float> logits, Span<int> ids, int rows, int vocab)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = logits.Slice(r * vocab, vocab);
            int best = 0;
            for (int j = 1; j < vocab; j++)
                if (!float.IsNaN(row[best]) && (float.IsNaN(row[j]) || row[j] > row[best])) best = j;
            ids[r] = best;
        }
    }
}
