using System.Numerics;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.GatedGeluKernel"/>. Generic so tests can run it
/// in double for finite differences; the activation itself is always evaluated in double.</summary>
internal static class GatedGeluReference
{
    public static void Forward<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y, int n) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < n; i++) y[i] = GeluTanh(a[i]) * b[i];
    }

    public static void Backward<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, ReadOnlySpan<T> dy, Span<T> da, Span<T> db, int n) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < n; i++)
        {
            da[i] = dy[i] * b[i] * GeluTanhDerivative(a[i]);
            db[i] = dy[i] * GeluTanh(a[i]);
        }
    }

    /// <summary>gelu_tanh(x) = 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).</summary>
    public static T GeluTanh<T>(T x) where T : IFloatingPointIeee754<T> => T.CreateChecked(Gelu(double.CreateChecked(x)));

    /// <summary>d gelu_tanh / dx.</summary>
    public static T GeluTanhDerivative<T>(T x) where T : IFloatingPointIeee754<T> => T.CreateChecked(GeluDerivative(double.CreateChecked(x)));

    // Evaluated in double through 0.5(1 + tanh(u)) = 1 / (1 + exp(-2u)): for x < -3 the textbook
    // 1 + tanh(u) cancels to a few correct digits in float (and to none below x ~ -5.2, where it
    // is 0), which would make the reference, not the kernel, the larger error in every test.
    const double SqrtTwoOverPi = 0.7978845608028654;
    const double Cubic = 0.044715;

    static double U(double x) => SqrtTwoOverPi * (x + Cubic * x * x * x);

    static double Gate(double x) => 1 / (1 + Math.Exp(-2 * U(x)));

    static double Gelu(double x) => x * Gate(x);

    /// <summary>s + 2 s (1 - s) x u'(x), s = Gate(x), using 1 - tanh(u)^2 = 4 s (1 - s).</summary>
    static double GeluDerivative(double x)
    {
        double s = Gate(x);
        double bell = s * (1 - s);
        // Once the gate has saturated bell is exactly 0 while x u'(x) can overflow to infinity;
        // 0 * inf would turn a zero term into NaN.
        if (bell == 0) return s;
        return s + 2 * bell * x * SqrtTwoOverPi * (1 + 3 * Cubic * x * x);
    }
}
