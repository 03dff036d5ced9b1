using Xunit.Sdk;

namespace VkPrompt.Tests;

/// <summary>Random data and the error measures the tests state their tolerances in.</summary>
public static class Check
{
    /// <summary>Sizes that are not multiples of any tile or subgroup size.</summary>
    public static readonly int[] AwkwardSizes = [1, 7, 33, 129, 300];

    public static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>max |actual - expected| / max |expected|: a relative error that stays meaningful
    /// when single elements are near zero.</summary>
    public static double MaxRelativeError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        if (expected.Length != actual.Length) throw new XunitException($"length {actual.Length} != expected {expected.Length}");
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(actual[i]) && actual[i] != expected[i])
                throw new XunitException($"element {i} is {actual[i]}, expected {expected[i]}");
            if (float.IsFinite(expected[i]))
            {
                maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
                maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
            }
        }
        return maxRef == 0 ? maxDiff : maxDiff / maxRef;
    }

    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance, string what)
    {
        double err = MaxRelativeError(expected, actual);
        if (!(err <= tolerance))
            throw new XunitException($"{what}: max relative error {err:E3} exceeds {tolerance:E1}");
    }

    /// <summary>Every float the same bits (+0 and -0 differ, equal NaNs agree); names the first that is not.</summary>
    public static void BitIdentical(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        if (expected.Length != actual.Length) throw new XunitException($"{what}: length {actual.Length} != expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                throw new XunitException($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} bit for bit");
    }

    /// <summary>||a - b|| / ||b||, the measure docs/numerics.md states gradient and prompt tolerances in.</summary>
    public static double NormRelativeError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = (double)actual[i] - expected[i];
            num += d * d;
            den += (double)expected[i] * expected[i];
        }
        return Math.Sqrt(num / den);
    }
}
