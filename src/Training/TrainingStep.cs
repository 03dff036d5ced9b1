using VkPrompt.Model;
using VkPrompt.Model.Backends;

namespace VkPrompt.Training;

/// <summary>One optimizer step begun by <see cref="PromptTrainer.BeginStep"/>: submit it whole or
/// advance it in slices (<see cref="Submission"/>), then read <see cref="Loss"/>. The prompt and
/// optimizer state it updates are the trainer's.</summary>
public sealed class TrainingStep : Submission
{
    readonly T5Pass pass;
    readonly HostBatch host;
    double? loss;

    internal TrainingStep(IRecording recording, T5Pass pass, HostBatch host, int number) : base(recording) =>
        (this.pass, this.host, Number) = (pass, host, number);

    /// <summary>The step's number (0 for the first step of a run).</summary>
    public int Number { get; }

    /// <summary>The mean token loss of the step's batch (computed in its forward, with dropout as
    /// configured); readable once the step is complete.</summary>
    public double Loss
    {
        get
        {
            if (loss is null)
            {
                RequireComplete("the loss");
                loss = PromptTrainer.MeanLoss(pass, host);
            }
            return loss.Value;
        }
    }

    /// <summary>Keeps the loss before the trainer reuses the pass's buffers for the next step.</summary>
    internal void Finish()
    {
        if (IsComplete) _ = Loss;
    }
}
