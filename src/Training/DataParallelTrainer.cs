using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// Prompt tuning data parallel: each step's batch is split over the devices of this process and
/// the processes of an <see cref="IProcessGroup"/> (<see cref="DataParallelGradient"/>), the
/// prompt gradients are combined in a fixed order, Adafactor steps once, and every device gets
/// the new prompt. The steps are the one-device steps within docs/numerics.md's tolerance at
/// dropout 0, and repeat bit for bit.
/// </summary>
/// <remarks>
/// The optimizer runs on each process's first device, from identical inputs (the combined
/// gradient's bits, the prompt's, the state's), and rank 0's new prompt is then broadcast: a
/// device of another vendor may round Adafactor's square roots differently, and with the prompt
/// taken from one device alone every device of every process holds the same prompt whatever the
/// mix. Each process keeps its own optimizer state, so <see cref="OptimizerState"/> (a
/// checkpoint) needs no collective; rank 0's is the one written.
/// </remarks>
internal sealed class DataParallelTrainer : IStepTrainer
{
    readonly DataParallelGradient gradient;
    readonly IProcessGroup group;
    readonly Backend first;
    readonly Tensor prompt, combined, state, update;
    readonly IRecording optimizerStep;

    /// <summary>The prompt's length in rows.</summary>
    public int PromptLength => gradient.PromptLength;
    /// <summary>The model width, the length of a prompt row.</summary>
    public int Dim { get; }
    /// <summary>Optimizer steps taken so far (the next batch is batch number Step).</summary>
    public int Step { get; private set; }


    /// <param name="replicas">The model on each device of this process, in worker order: the
    /// frozen weights of one checkpoint at one precision on each.</param>
    /// <param name="group">The processes of the run (<see cref="SingleProcess"/>: this one); every
    /// process makes its trainer with the same arguments and steps it on the same batches.</param>
    /// <param name="initialPrompt">The prompt to start from, [prompt length x d_model].</param>
    /// <param name="optimizer">Adafactor's settings.</param>
    /// <param name="dropout">The model's dropout rate during training (0: none).</param>
    /// <param name="seed">Seeds the dropout masks.</param>
    /// <param name="activations">Whether blocks' activations are stored or recomputed.</param>
    /// <param name="optimizerState">Adafactor's state to resume from (null: fresh).</param>
    /// <param name="step">Steps already taken.</param>
    /// <param name="stepOffset">Added to a fresh state's step count (as <see cref="PromptTrainer"/>).</param>
    public DataParallelTrainer(IReadOnlyList<T5Weights> replicas, IProcessGroup group, float[] initialPrompt, AdafactorSettings optimizer, float dropout, int seed,
                               ActivationMode activations = ActivationMode.Store, float[]? optimizerState = null, int step = 0, int stepOffset = 0)
    {
        this.group = group;
        gradient = new DataParallelGradient(replicas, group, initialPrompt, activations, dropout, seed);
        Dim = replicas[0].Config.DModel;
        Step = step;
        try
        {
            var s = PromptTrainer.StartState(optimizer, dropout, PromptLength, Dim, optimizerState, step, stepOffset);
            (var weights, prompt) = gradient.First;
            first = weights.Backend;
            combined = first.Floats(initialPrompt.Length, "prompt_gradient");
            update = first.Floats(initialPrompt.Length, "adafactor_update");
            state = first.Floats(s.Length, "adafactor_state");
            first.Upload(state, s);
            optimizerStep = first.Record(() =>
            {
                using var phase = first.Phase(PromptTrainer.OptimizerPhase);
                first.Adafactor(prompt, combined, state, update, PromptLength, Dim, optimizer);
            });
        }
        catch { Dispose(); throw; }
    }

    /// <summary>One optimizer step on <paramref name="batch"/> (the same on every process), blocking;
    /// the mean token loss over the whole batch.</summary>
    /// <param name="batch">The examples of the step.</param>
    /// <param name="batchSize">Pads the batch to this many rows (a fixed shape), shared over the
    /// workers as the rows are; null: the batch's own count.</param>
    public double TrainStep(IReadOnlyList<EncodedExample> batch, int? batchSize = null)
    {
        var (loss, g) = gradient.Compute(batch, batchSize, Step);
        var g32 = new float[g.Length];
        for (int j = 0; j < g.Length; j++) g32[j] = (float)g[j];
        first.Upload(combined, g32);
        optimizerStep.Run();
        var p = Prompt();
        group.Broadcast(p, root: 0);
        gradient.SetPrompt(p, exceptFirst: group.Rank == 0);
        Step++;
        return loss;
    }

    /// <summary>A copy of the prompt, as of the last complete step (the same on every device).</summary>
    public float[] Prompt() => first.Download(prompt);

    /// <summary>A copy of this process's Adafactor state, as of the last complete step.</summary>
    public float[] OptimizerState() => first.Download(state);

    /// <summary>Frees the optimizer's buffers and every worker's (the replicas are the model's).</summary>
    public void Dispose()
    {
        optimizerStep?.Dispose();
        combined?.Dispose();
        update?.Dispose();
        state?.Dispose();
        gradient.Dispose();
    }
}
