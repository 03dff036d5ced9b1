using System.Numerics;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="GatedActivationKernel"/>. Generic so tests can run it
/// in double for finite differences; the activation itself is always evaluated in double.</summary>
internal static class GatedActivationReference
{
    public static void Forward<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y, int n, GateActivation activation) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < n; i++) y[i] = Activation(activation, a[i]) * b[i];
    }

    public static void Backward<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, ReadOnlySpan<T> dy, Span<T> da, Span<T> db, int n, GateActivation activation)
        where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < n; i++)
        {
            da[i] = dy[i] * b[i] * Derivative(activation, a[i]);
            db[i] = dy[i] * Activation(activation, a[i]);
        }
    }

    /// <summary>act(x): gelu_tanh(x) = 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), or silu(x) = x·sigmoid(x).</summary>
    public static T Activation<T>(GateActivation activation, T x) where T : IFloatingPointIeee754<T>
    {
        double v = double.CreateChecked(x);
        return T.CreateChecked(activation == GateActivation.Silu ? Silu(v) : Gelu(v));
    }

    /// <summary>d act / dx.</summary>
    public static T Derivative<T>(GateActivation activation, T x) where T : IFloatingPointIeee754<T>
    {
        double v = double.CreateChecked(x);
        return T.CreateChecked(activation == GateActivation.Silu ? SiluDerivative(v) : GeluDerivative(v));
    }

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

    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    static double Silu(double x) => x * Sigmoid(x);

    /// <summary>s + x s (1 - s), s = sigmoid(x); where s saturates the second term is x·0 = 0.</summary>
    static double SiluDerivative(double x)
    {
        double s = Sigmoid(x);
        return s + x * s * (1 - s);
    }
}
