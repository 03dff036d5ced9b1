namespace VkPrompt.Runtime.Kernels;

/// <summary>Adafactor as T5X configures it for prompt tuning (SPEC.md): no momentum, no
/// parameter scaling, a constant learning rate.</summary>
public sealed record AdafactorSettings
{
    public float LearningRate { get; init; } = 0.3f;
    public float DecayRate { get; init; } = 0.8f;
    public float ClippingThreshold { get; init; } = 1.0f;
    public float WeightDecay { get; init; } = 1e-5f;
    public float Epsilon1 { get; init; } = 1e-30f;
    /// <summary>Factor the second moment iff the parameter's second-largest dim is at least this.</summary>
    public int MinDimToFactor { get; init; } = 128;

    public bool Factored(int rows, int cols) => Math.Min(rows, cols) >= MinDimToFactor;

    /// <summary>Floats of optimizer state after the step counter: v, or v_row and v_col.</summary>
    public long StateLength(int rows, int cols) => 1 + (Factored(rows, cols) ? rows + cols : (long)rows * cols);
}
