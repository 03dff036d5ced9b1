using VkPrompt.Model;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>Every knob of a prompt-tuning run. Defaults are the paper's (Lester et al. 2021).</summary>
public sealed record TrainOptions
{
    /// <summary>The paper's prompt length, taken where nothing else decides it.</summary>
    public const int DefaultPromptLength = 100;

    /// <summary>Soft prompt length P. null: the checkpoint's when resuming, else the length of an
    /// <see cref="Init"/> file:PATH prompt, else <see cref="DefaultPromptLength"/>. A length given
    /// must agree with the checkpoint or the file.</summary>
    public int? PromptLength { get; init; }
    /// <summary>Optimizer steps in all (a resumed run counts the steps before it).</summary>
    public int Steps { get; init; } = 30_000;
    /// <summary>Examples per training step (and per validation batch).</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Seeds initialisation, shuffling and dropout.</summary>
    public int Seed { get; init; }
    /// <summary>Shuffle the examples each epoch; false takes examples (s·B + i) mod N.</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>null = the checkpoint's dropout_rate.</summary>
    public float? Dropout { get; init; }
    /// <summary>Input tokens kept per example (eos included); longer inputs are truncated keeping the final eos.</summary>
    public int MaxInputLength { get; init; } = 512;
    /// <summary>Target tokens kept per example (eos included), and the longest decoding of free-text validation.</summary>
    public int MaxTargetLength { get; init; } = 128;
    /// <summary>Adafactor's settings.</summary>
    public AdafactorSettings Optimizer { get; init; } = new();
    /// <summary>Added to the optimizer's step counter (continuing a schedule from elsewhere).</summary>
    public int StepOffset { get; init; }
    /// <summary>auto | random | vocab | class | text:STRING | file:PATH (docs/numerics.md initialisers);
    /// auto is class where there are labels, else vocab.</summary>
    public string Init { get; init; } = "auto";
    /// <summary>The class labels (class init, and validation accuracy by rank classification).
    /// null: the training targets, where they form a small label set (<see cref="RankClassifier.LabelSet"/>).</summary>
    public IReadOnlyList<string>? Choices { get; init; }
    /// <summary>Evaluate on the validation examples every this many steps (and at the last); 0 = never.</summary>
    public int EvalEvery { get; init; }
    /// <summary>Stop once this many evaluations in a row have not improved on the best; 0 = never
    /// (the paper trains every step and keeps the best prompt).</summary>
    public int Patience { get; init; }
    /// <summary>Write a resumable checkpoint every this many steps (and at the last); 0 = only at the last.</summary>
    public int SaveEvery { get; init; }
    /// <summary>Store activations for the backward, or recompute them (less memory, ~1.3x the time);
    /// how they are stored (fp32 or 16 bits) is the model's <see cref="VkPrompt.Model.Backends.Backend.Activations"/>.</summary>
    public ActivationMode ActivationMode { get; init; } = ActivationMode.Store;
    /// <summary>Continue the run whose checkpoint is in the output directory (bit-identically);
    /// without a checkpoint there, start from step 0.</summary>
    public bool Resume { get; init; }
    /// <summary>Replace an earlier run in the output directory: the files its manifest
    /// (vkprompt-run.json) lists, and only once the new run has taken its first step, so a run
    /// that fails to start leaves the earlier one whole. Without it, or <see cref="Resume"/>, a
    /// directory that holds one is refused, so a finished run is never lost to a repeated command.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Also write each adapter's prompt as T5X numpy (<see cref="Adapter.NpyFile"/>).</summary>
    public bool ExportNpy { get; init; }
}

/// <summary>What one logged step reports.</summary>
/// <param name="Step">The optimizer steps taken, this one included.</param>
/// <param name="Loss">The step's mean loss per target token.</param>
/// <param name="Tokens">The tokens the step trained on: its examples' input and target tokens,
/// eos included; neither padding nor the soft prompt counts.</param>
/// <param name="StepsPerSecond">Steps of this run (not of a run it resumed) per second so far.</param>
/// <param name="ValidationLoss">On evaluation steps, the mean loss per validation target token.</param>
/// <param name="ValidationAccuracy">On evaluation steps, validation accuracy where there is one.</param>
public sealed record StepReport(int Step, double Loss, int Tokens, double StepsPerSecond, double? ValidationLoss = null, double? ValidationAccuracy = null);
