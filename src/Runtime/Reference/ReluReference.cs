using System.Numerics;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.ReluKernel"/>; generic so tests can run it in
/// double for finite differences.</summary>
internal static class ReluReference
{
    public static void Forward<T>(ReadOnlySpan<T> x, Span<T> y, int n) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < n; i++) y[i] = x[i] < T.Zero ? T.Zero : x[i];
    }

    public static void Backward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> dy, Span<T> dx, int n) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < n; i++) dx[i] = x[i] > T.Zero ? dy[i] : T.Zero;
    }
}
