using System.Numerics;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.SoftmaxBackwardKernel"/>, in double:
/// grad becomes P ⊙ (grad − Σ_j P⊙grad) row by row.</summary>
public static class SoftmaxBackwardReference
{
    public static void Backward<T>(ReadOnlySpan<T> probs, Span<T> grad, int rows, int length)
        where T : IFloatingPointIeee754<T>
    {
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
