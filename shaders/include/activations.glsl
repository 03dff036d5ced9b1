// Activation functions shared by forward and backward shaders, so both use one formula.
#ifndef VKPROMPT_ACTIVATIONS_GLSL
#define VKPROMPT_ACTIVATIONS_GLSL

// gelu_tanh(x) = 0.5x(1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715x^3), evaluated through the
// identity 0.5(1 + tanh(u)) = 1 / (1 + exp(-2u)). tanh() is not used because drivers may build
// it as (e^u - e^-u) / (e^u + e^-u), which is inf/inf = NaN once |u| passes ~44 (|x| > ~10);
// the logistic form saturates to exactly 0 or 1 as exp() overflows to inf or underflows to 0,
// for every finite x (x^3 overflowing only pushes u to +-inf, which saturates the same way).
// It also keeps full relative precision for negative x, where 1 + tanh(u) cancels.
const float GELU_SQRT_2_OVER_PI = 0.7978845608028654;
const float GELU_CUBIC = 0.044715;

float gelu_u(float x) { return GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x); }

// s = 0.5(1 + tanh(u))
float gelu_gate(float x) { return 1.0 / (1.0 + exp(-2.0 * gelu_u(x))); }

float gelu_tanh(float x) { return x * gelu_gate(x); }

// d/dx = s + 2 s (1 - s) x u'(x), using 1 - tanh(u)^2 = 4 s (1 - s). x u'(x) grows like x^3 and
// overflows to inf for huge |x| while s (1 - s) is already 0 there (inf * 0 = NaN), so that
// factor takes x clamped to +-10: beyond it s (1 - s) < 2e-38, and the clamp changes the
// product by less than 1e-35.
float gelu_tanh_grad(float x) {
    float s = gelu_gate(x);
    float xc = clamp(x, -10.0, 10.0);
    float du = GELU_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * xc * xc);
    return s + 2.0 * s * (1.0 - s) * xc * du;
}

// silu(x) = x * sigmoid(x) (UL2's gated-silu). For x -> -inf exp(-x) overflows to inf and the
// sigmoid is exactly 0; for x -> +inf it is exactly 1: no NaN for any finite x.
float silu_gate(float x) { return 1.0 / (1.0 + exp(-x)); }

float silu(float x) { return x * silu_gate(x); }

// d/dx = s + x s (1 - s). Where s saturates to 0 or 1 the second term is x * 0 = 0 (x finite).
float silu_grad(float x) {
    float s = silu_gate(x);
    return s + x * s * (1.0 - s);
}

// T5 v1.0's feed-forward activation, max(x, 0) as a comparison: max() with a NaN operand is
// undefined in GLSL, while this passes NaN through (as PyTorch's relu does) so that a diverged
// run stays visible.
float relu(float x) { return x < 0.0 ? 0.0 : x; }

// The gated feed-forward's activation, selected by a specialization constant: the values of
// GateActivation in src/Runtime/Kernels/GatedActivationKernel.cs.
const uint ACTIVATION_GELU_TANH = 0u;
const uint ACTIVATION_SILU = 1u;

float gate_activation(uint kind, float x) { return kind == ACTIVATION_SILU ? silu(x) : gelu_tanh(x); }

float gate_activation_grad(uint kind, float x) { return kind == ACTIVATION_SILU ? silu_grad(x) : gelu_tanh_grad(x); }

#endif
