using System.Numerics;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="SoftmaxBackwardKernel"/>, in double:
/// grad becomes P ⊙ (grad − Σ_j P⊙grad) row by row. A non-empty <c>dropped</c> with
/// a rate above 0 is the dispatch's <see cref="ProbsDropout{TBuffer}"/>: grad first goes through
/// <see cref="DropoutReference"/>'s mask, and dropped gets the probabilities through it.</summary>
internal static class SoftmaxBackwardReference
{
    public static void Backward<T>(ReadOnlySpan<T> probs, Span<T> grad, int rows, int length,
                                   float dropoutRate = 0f, uint seed = 0, uint stream = 0, Span<T> dropped = default)
        where T : IFloatingPointIeee754<T>
    {
        int n = rows * length;
        if (!dropped.IsEmpty && DropoutKernel.KeepThreshold(dropoutRate) != 0)
        {
            DropoutReference.Backward(grad, n, dropoutRate, seed, stream);
            probs[..n].CopyTo(dropped);
            DropoutReference.Forward(dropped, n, dropoutRate, seed, stream);
        }
        for (int r = 0; r < rows; r++)
        {
            var p = probs.Slice(r * length, length);
            var g = grad.Slice(r * length, length);
            double dot = 0;
            for (int j = 0; j < length; j++) dot += double.CreateTruncating(p[j]) * double.CreateTruncating(g[j]);
            for (int j = 0; j < length; j++)
                g[j] = T.CreateTruncating(double.CreateTruncating(p[j]) * (double.CreateTruncating(g[j]) - dot));
        }
    }
}
