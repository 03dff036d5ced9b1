namespace VkPrompt.Runtime;

/// <summary>Adafactor as T5X configures it for prompt tuning (docs/numerics.md): no momentum, no
/// parameter scaling, a constant learning rate.</summary>
public sealed record AdafactorSettings
{
    /// <summary>The constant step size; 0.3 is what Lester et al. tuned prompts with.</summary>
    public float LearningRate { get; init; } = 0.3f;
    /// <summary>The second-moment decay exponent: step t weighs the new squared gradient by t^-DecayRate.</summary>
    public float DecayRate { get; init; } = 0.8f;
    /// <summary>The update is scaled down where its root mean square exceeds this.</summary>
    public float ClippingThreshold { get; init; } = 1.0f;
    /// <summary>The fraction the prompt shrinks by every step, applied with the update.</summary>
    public float WeightDecay { get; init; } = 1e-5f;
    /// <summary>Added to squared gradients, so an element whose gradient is exactly 0 does not divide by 0.</summary>
    public float Epsilon1 { get; init; } = 1e-30f;
    /// <summary>Factor the second moment iff the parameter's second-largest dim is at least this.</summary>
    public int MinDimToFactor { get; init; } = 128;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting the update
    /// cannot work with; <paramref name="name"/> maps a property's name to the caller's (a
    /// command-line option's, say).</summary>
    public void Validate(Func<string, string>? name = null)
    {
        name ??= n => n;
        void Require(bool ok, string property, string what, double value)
        {
            if (!ok) throw new ArgumentException($"{name(property)} must be {what}, got {value.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        }
        Require(float.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), "a finite number above 0", LearningRate);
        // β₂ = 1 - t^-decay: a negative decay makes β₂ negative and the second moment with it.
        Require(float.IsFinite(DecayRate) && DecayRate >= 0, nameof(DecayRate), "a finite number of at least 0", DecayRate);
        Require(float.IsFinite(ClippingThreshold) && ClippingThreshold > 0, nameof(ClippingThreshold), "a finite number above 0", ClippingThreshold);
        // The prompt is multiplied by 1 - weight decay every step.
        Require(WeightDecay is >= 0 and < 1, nameof(WeightDecay), "in [0, 1)", WeightDecay);
        // Without it a gradient element that is exactly 0 divides 0 by 0.
        Require(float.IsFinite(Epsilon1) && Epsilon1 > 0, nameof(Epsilon1), "a finite number above 0", Epsilon1);
        Require(MinDimToFactor >= 1, nameof(MinDimToFactor), "at least 1", MinDimToFactor);
    }

    /// <summary>Whether a rows x cols parameter keeps its second moment factored (a row and a column
    /// vector) instead of whole: see <see cref="MinDimToFactor"/>.</summary>
    public bool Factored(int rows, int cols) => Math.Min(rows, cols) >= MinDimToFactor;

    /// <summary>Floats of optimizer state after the step counter: v, or v_row and v_col.</summary>
    public long StateLength(int rows, int cols) => 1 + (Factored(rows, cols) ? rows + cols : (long)rows * cols);
}
