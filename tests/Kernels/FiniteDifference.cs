namespace VkPrompt.Tests.Kernels;

/// <summary>Central finite differences in double, the yardstick for backward references.</summary>
public static class FiniteDifference
{
    /// <summary>d loss / d x[i] ≈ (loss(x + h e_i) - loss(x - h e_i)) / 2h for every i.</summary>
    public static double[] Gradient(double[] x, Func<double[], double> loss, double h = 1e-6)
    {
        var grad = new double[x.Length];
        var probe = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            probe[i] = x[i] + h;
            double plus = loss(probe);
            probe[i] = x[i] - h;
            double minus = loss(probe);
            probe[i] = x[i];
            grad[i] = (plus - minus) / (2 * h);
        }
        return grad;
    }

    /// <summary>sum_i w[i] y[i]: a scalar loss whose gradient with respect to y is w, so a
    /// backward called with dy = w must match the finite differences of this loss.</summary>
    public static double Dot(ReadOnlySpan<double> w, ReadOnlySpan<double> y)
    {
        double s = 0;
        for (int i = 0; i < w.Length; i++) s += w[i] * y[i];
        return s;
    }

    public static double[] ToDouble(ReadOnlySpan<float> a)
    {
        var d = new double[a.Length];
        for (int i = 0; i < a.Length; i++) d[i] = a[i];
        return d;
    }

    /// <summary>max |a - b| / max |b| over doubles.</summary>
    public static double MaxRelativeError(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual)
    {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return maxRef == 0 ? maxDiff : maxDiff / maxRef;
    }
}
