using System.Numerics;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.RmsNormKernel"/>, accumulating in double. Generic so
/// tests can run it in double for finite differences and in float against the GPU.</summary>
internal static class RmsNormReference
{
    public static void Forward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, Span<T> y, int rows, int dim, float eps)
        where T : IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * dim, dim);
            double rs = InverseRms(xr, eps);
            for (int j = 0; j < dim; j++)
                y[r * dim + j] = T.CreateTruncating(double.CreateTruncating(w[j]) * (double.CreateTruncating(xr[j]) * rs));
        }
    }

    /// <summary>dx_k = (accumulate ? dx_k : 0) + r·w_k·dy_k − (r³/dim)·x_k·Σ_j w_j·dy_j·x_j, r = rsqrt(mean(x²) + eps).</summary>
    public static void Backward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> dy, Span<T> dx, int rows, int dim, float eps, bool accumulate)
        where T : IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
        {
            int o = r * dim;
            double rs = InverseRms(x.Slice(o, dim), eps);
            double dot = 0;
            for (int j = 0; j < dim; j++)
                dot += double.CreateTruncating(w[j]) * double.CreateTruncating(dy[o + j]) * double.CreateTruncating(x[o + j]);
            double c = rs * rs * rs / dim * dot;
            for (int j = 0; j < dim; j++)
            {
                double d = rs * double.CreateTruncating(w[j]) * double.CreateTruncating(dy[o + j]) - c * double.CreateTruncating(x[o + j]);
                if (accumulate) d += double.CreateTruncating(dx[o + j]);
                dx[o + j] = T.CreateTruncating(d);
            }
        }
    }

    static double InverseRms<T>(ReadOnlySpan<T> x, float eps) where T : IFloatingPointIeee754<T>
    {
        double ss = 0;
        foreach (var v in x)
        {
            double d = double.CreateTruncating(v);
            ss += d * d;
        }
        return 1 / Math.Sqrt(ss / x.Length + eps);
    }
}
