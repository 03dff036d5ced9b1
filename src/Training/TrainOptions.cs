using VkPrompt.Model;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Training;

/// <summary>Every knob of a prompt-tuning run. Defaults are the paper's (Lester et al. 2021).</summary>
public sealed record TrainOptions
{
    public int PromptLength { get; init; } = 100;
    public int Steps { get; init; } = 30_000;
    public int BatchSize { get; init; } = 32;
    public int Seed { get; init; }
    public bool Shuffle { get; init; } = true;
    /// <summary>null = the checkpoint's dropout_rate.</summary>
    public float? Dropout { get; init; }
    public int MaxInputLength { get; init; } = 512;
    public int MaxTargetLength { get; init; } = 128;
    public AdafactorSettings Optimizer { get; init; } = new();
    /// <summary>Added to the optimizer's step counter (continuing a schedule from elsewhere).</summary>
    public int StepOffset { get; init; }
    /// <summary>auto | random | vocab | class | text:STRING | file:PATH (docs/numerics.md initialisers).</summary>
    public string Init { get; init; } = "auto";
    public IReadOnlyList<string>? Choices { get; init; }
    public int EvalEvery { get; init; }
    /// <summary>Stop once this many evaluations in a row have not improved on the best; 0 = never
    /// (the paper trains every step and keeps the best prompt).</summary>
    public int Patience { get; init; }
    public int SaveEvery { get; init; }
    public ActivationMode Activations { get; init; } = ActivationMode.Store;
}

/// <summary>What one logged step reports.</summary>
public sealed record StepReport(int Step, double Loss, int Tokens, double StepsPerSecond, double? ValidationLoss = null, double? ValidationAccuracy = null);
