using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// The training step of a model split across devices (<see cref="ModelPipeline"/>): forward and
/// prompt-only backward through the stages in micro-batches (<see cref="PipelineStep"/>), then
/// Adafactor once, on the first stage, which holds the prompt (the encoder's input) and the
/// optimizer state. The result is <see cref="PromptTrainer"/>'s within docs/numerics.md's
/// tolerance (with one micro-batch, bit for bit on like devices), and the same bits on every run.
/// With dropout, each micro-batch draws its own masks (micro-batch 0 those of the whole batch on
/// one device), so a run with dropout and several micro-batches is a different, equally random draw.
/// </summary>
internal sealed class PipelineTrainer : IStepTrainer
{
    readonly ModelPipeline pipeline;
    readonly Backend be;   // the first stage's
    readonly float dropout;
    readonly ActivationMode activations;
    readonly int seed;
    readonly Tensor prompt, gradient, state, update;
    readonly IRecording step;
    PipelineStep? last;

    public int PromptLength { get; }
    public int Dim { get; }
    public int Step { get; private set; }

    public PipelineTrainer(ModelPipeline pipeline, float[] initialPrompt, AdafactorSettings optimizer, float dropout, int seed,
                           ActivationMode activations = ActivationMode.Store, float[]? optimizerState = null, int step = 0, int stepOffset = 0)
    {
        this.pipeline = pipeline;
        be = pipeline.Stages[0].Backend;
        this.dropout = dropout;
        this.seed = seed;
        this.activations = activations;
        Dim = pipeline.Config.DModel;
        if (initialPrompt.Length == 0 || initialPrompt.Length % Dim != 0) throw new ArgumentException("prompt size is not a multiple of d_model");
        PromptLength = initialPrompt.Length / Dim;
        Step = step;
        var s = PromptTrainer.StartState(optimizer, dropout, PromptLength, Dim, optimizerState, step, stepOffset);
        (prompt, gradient, state, update, this.step) = be.AllOrNothing(() =>
        {
            var p = be.Floats(initialPrompt.Length, "prompt");
            var g = be.Floats(initialPrompt.Length, "prompt_grad", hostVisible: true);
            var st = be.Floats(s.Length, "adafactor_state");
            var u = be.Floats(initialPrompt.Length, "adafactor_update");
            var run = be.Record(() =>
            {
                using var phase = be.Phase(PromptTrainer.OptimizerPhase);
                be.Adafactor(p, g, st, u, PromptLength, Dim, optimizer);
            });
            return (p, g, st, u, run);
        });
        be.Upload(prompt, initialPrompt);
        be.Upload(state, s);
    }

    public double TrainStep(IReadOnlyList<EncodedExample> batch, int? batchSize = null)
    {
        var host = HostBatch.Build(batch, PromptLength, batchSize: batchSize, decoderStart: pipeline.Config.DecoderStartTokenId);
        int number = Step;
        // Micro-batch 0 draws the one-device step's masks; the others masks of their own.
        var (logProbs, grad) = StepFor(host.Shape).Run(host, backward: true, m => PromptTrainer.DropoutSeed(seed, number) ^ (int)((uint)m * 0xC2B2AE35u));
        be.Upload(gradient, grad!);
        step.Run();
        Step++;
        return -logProbs.Sum(v => (double)v) / host.TargetTokens;
    }

    /// <summary>The step of <paramref name="shape"/>, kept while batches keep it (the memory plan
    /// builds it alone, on a pipeline of unloaded weights).</summary>
    internal PipelineStep StepFor(BatchShape shape)
    {
        if (last is { } kept && kept.Shape == shape) return kept;
        // One shape's step is kept, as PromptTrainer keeps one (its activations are the most memory).
        last?.Dispose();
        last = null;
        return last = new PipelineStep(pipeline, shape, activations, prompt, dropout);
    }

    public float[] Prompt() => be.Download(prompt);

    public float[] OptimizerState() => be.Download(state);

    /// <summary>Loss and prompt gradient of <paramref name="examples"/> taken as one batch
    /// through the stages (<c>vkprompt grad --pipeline</c>): no optimizer step, no dropout.</summary>
    public static (double Loss, float[] Gradient) Gradient(ModelPipeline pipeline, IReadOnlyList<EncodedExample> examples, float[] promptData, ActivationMode mode = ActivationMode.Store)
    {
        var be = pipeline.Stages[0].Backend;
        int d = pipeline.Config.DModel;
        using var prompt = be.Floats(promptData.Length, "prompt");
        be.Upload(prompt, promptData);
        var host = HostBatch.Build(examples, promptData.Length / d, decoderStart: pipeline.Config.DecoderStartTokenId);
        using var work = new PipelineStep(pipeline, host.Shape, mode, prompt, 0);
        var (logProbs, grad) = work.Run(host, backward: true);
        double loss = -logProbs.Sum(v => (double)v) / host.TargetTokens;
        if (!double.IsFinite(loss)) throw new NonFiniteOutputException("the loss", loss);
        return (loss, grad!);
    }

    public void Dispose()
    {
        last?.Dispose();
        step.Dispose();
        prompt.Dispose();
        gradient.Dispose();
        state.Dispose();
        update.Dispose();
    }
}
