using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>
/// What a <see cref="TrainingRun"/> drives: one optimizer step per batch, whatever the placement
/// of the model. <see cref="PromptTrainer"/> is the model on one device; a placement over several
/// devices (data parallel, a model split across devices, several processes) is another
/// implementation that gives the same numbers (docs/numerics.md's tolerance). Made by
/// <see cref="PromptModel.CreateTrainer"/>, so the run does not know where the model lives.
/// </summary>
internal interface IStepTrainer : IDisposable
{
    /// <summary>The prompt's length in rows.</summary>
    int PromptLength { get; }
    /// <summary>The model width, the length of a prompt row.</summary>
    int Dim { get; }
    /// <summary>Optimizer steps taken so far (the next batch is batch number Step).</summary>
    int Step { get; }

    /// <summary>One optimizer step on <paramref name="batch"/>, blocking; the mean token loss over the whole batch.</summary>
    /// <param name="batch">The examples of the step.</param>
    /// <param name="batchSize">Pads the batch to this many rows (a fixed shape); null: the batch's own count.</param>
    double TrainStep(IReadOnlyList<EncodedExample> batch, int? batchSize = null);

    /// <summary>A copy of the prompt, as of the last complete step.</summary>
    float[] Prompt();

    /// <summary>A copy of Adafactor's state, as of the last complete step.</summary>
    float[] OptimizerState();
}
