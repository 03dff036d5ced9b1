using VkPrompt.Model.Backends;

namespace VkPrompt.Model;

/// <summary>
/// Teacher-forced scoring through the stages of a <see cref="ModelPipeline"/>: the forward of
/// <see cref="PipelineStep"/> alone, in micro-batches, with the prompts on the first stage. As
/// <see cref="Scorer"/> does, it keeps the work of the last batch shape and replays it while
/// batches keep that shape.
/// </summary>
internal sealed class PipelineScorer(ModelPipeline pipeline) : IBatchScorer
{
    (PipelineStep Step, Tensor? Prompts)? kept;

    Backend First => pipeline.Stages[0].Backend;

    public ScoreResult[] Score(IReadOnlyList<EncodedExample> batch, PromptSet? prompts, IReadOnlyList<int>? promptIndex = null, int? batchSize = null)
    {
        var host = Scorer.Layout(batch, prompts, promptIndex, batchSize, pipeline.Config);
        var (step, tensor) = StepFor(host.Shape);
        if (prompts is not null) First.Upload(tensor!, prompts.Data);
        var (logProbs, _) = step.Run(host, backward: false);
        return ScoringBatch.Sum(logProbs, host.Shape.TargetLength, batch);
    }

    /// <summary>The forward of <paramref name="shape"/> and its prompts, kept while batches keep
    /// the shape (the memory plan builds it alone, on a pipeline of unloaded weights).</summary>
    internal (PipelineStep, Tensor?) StepFor(BatchShape shape)
    {
        if (kept is { } k && k.Step.Shape == shape) return k;
        DropKept();
        // Host-visible, as Scorer's: a batch's prompts go up without a staging copy.
        var prompts = shape.PromptLength > 0 ? First.Floats((long)shape.NumPrompts * shape.PromptLength * pipeline.Config.DModel, "prompts", hostVisible: true) : null;
        try { kept = (new PipelineStep(pipeline, shape, ActivationMode.Inference, prompts, 0), prompts); }
        catch
        {
            prompts?.Dispose();
            throw;
        }
        return kept.Value;
    }

    void DropKept()
    {
        if (kept is { } k)
        {
            k.Step.Dispose();
            k.Prompts?.Dispose();
        }
        kept = null;
    }

    public void Dispose() => DropKept();
}
