using VkPrompt.Model.Backends;

namespace VkPrompt.Model;

/// <summary>What scores batches, blocking: the model on one device (<see cref="Scorer"/>) or split
/// across devices (<see cref="PipelineScorer"/>).</summary>
internal interface IBatchScorer : IDisposable
{
    /// <summary>Scores one batch, example i with prompt promptIndex[i] of <paramref name="prompts"/>
    /// (null: no prompt; null index: prompt 0), blocking until it is done.</summary>
    ScoreResult[] Score(IReadOnlyList<EncodedExample> batch, PromptSet? prompts, IReadOnlyList<int>? promptIndex = null, int? batchSize = null);
}

/// <summary>
/// Teacher-forced scoring: the summed log-probability of each example's target given its input
/// and (optionally) a soft prompt per example; several prompts (tasks, or an ensemble) can share
/// one batch. The pass of the last batch shape is kept, recorded, and replayed while batches keep
/// that shape: callers order their batches shortest first (<see cref="HostBatch.ShortestFirst"/>),
/// so shapes come in runs, and one pass's activations is all the memory a Scorer holds (during
/// training, beside the training step's own).
/// </summary>
internal sealed class Scorer : IBatchScorer
{
    readonly T5Weights weights;
    (T5Pass Pass, IRecording Run, Tensor? Prompts)? kept;

    /// <param name="weights">the whole model on one backend: a stage of a pipeline would score
    /// with its layers alone, so it is refused.</param>
    public Scorer(T5Weights weights) => this.weights = weights.Layers.IsAll ? weights
        : throw new NotSupportedException($"scoring runs on the whole model on one device, not on a stage of a model split across devices ({weights.Layers}) yet");

    /// <summary>Scores one batch, example i with prompt promptIndex[i] of <paramref name="prompts"/>
    /// (null: no prompt; null index: prompt 0), blocking until it is done.</summary>
    public ScoreResult[] Score(IReadOnlyList<EncodedExample> batch, PromptSet? prompts, IReadOnlyList<int>? promptIndex = null, int? batchSize = null)
    {
        var scoring = Begin(batch, prompts, promptIndex, batchSize);
        scoring.Wait();
        return scoring.Results;
    }

    /// <summary>Prepares one batch's scoring and returns it unsubmitted (<see cref="ScoringBatch"/>);
    /// the batch before must be complete (they share the kept pass). The inputs and prompts go to
    /// host-visible memory, so nothing here waits for the GPU.</summary>
    public ScoringBatch Begin(IReadOnlyList<EncodedExample> batch, PromptSet? prompts, IReadOnlyList<int>? promptIndex = null, int? batchSize = null)
    {
        if (current is { IsStarted: true, IsComplete: false })
            throw new InvalidOperationException("cannot begin another scoring batch while the last is in flight: wait for its ticket (or Wait()) first");
        current?.Finish();
        var host = Layout(batch, prompts, promptIndex, batchSize, weights.Config);
        var (pass, run) = PassFor(host.Shape);
        if (prompts is not null) weights.Backend.Upload(pass.Prompts!, prompts.Data);
        pass.Load(host);
        return current = new ScoringBatch(run, pass, host, batch);
    }

    ScoringBatch? current;

    /// <summary>Scores <paramref name="batches"/> (each its examples and their prompt indices, as
    /// <see cref="Score"/> takes them) over <paramref name="scorers"/>, one per device: batch k
    /// goes to scorer k mod count, a round of them is submitted before any is waited for so the
    /// devices work at once, and the results come back in batch order. Each batch is the batch
    /// one device would score, so on devices of one kind the results are one device's bits.</summary>
    public static ScoreResult[][] ScoreAll(IReadOnlyList<IBatchScorer> scorers, IReadOnlyList<(IReadOnlyList<EncodedExample> Batch, IReadOnlyList<int>? PromptIndex)> batches,
                                           PromptSet? prompts, int? batchSize)
    {
        // One scorer (one device, or the stages of a pipeline, which overlap among themselves) scores batch by batch.
        if (scorers.Count == 1) return batches.Select(b => scorers[0].Score(b.Batch, prompts, b.PromptIndex, batchSize)).ToArray();
        var results = new ScoreResult[batches.Count][];
        var round = new ScoringBatch[scorers.Count];
        for (int first = 0; first < batches.Count; first += scorers.Count)
        {
            int n = Math.Min(scorers.Count, batches.Count - first);
            for (int i = 0; i < n; i++)
            {
                // Several scorers are the devices of data parallel, each a Scorer (a pipeline is one scorer).
                round[i] = ((Scorer)scorers[i]).Begin(batches[first + i].Batch, prompts, batches[first + i].PromptIndex, batchSize);
                round[i].Submit();
            }
            for (int i = 0; i < n; i++)
            {
                round[i].Wait();
                results[first + i] = round[i].Results;
            }
        }
        return results;
    }

    /// <summary>A scoring batch laid out for the device, the rows of shorter prompts masked.</summary>
    internal static HostBatch Layout(IReadOnlyList<EncodedExample> batch, PromptSet? prompts, IReadOnlyList<int>? promptIndex, int? batchSize, T5Config config)
    {
        if (prompts is not null && prompts.Data.Length != (long)prompts.Count * prompts.Length * config.DModel)
            throw new ArgumentException($"the prompts are not of this model's d_model {config.DModel}");
        return HostBatch.Build(batch, prompts?.Length ?? 0, prompts?.Count ?? 1, promptIndex, batchSize, config.DecoderStartTokenId,
                               promptLengths: prompts?.MaskedLengths);
    }

    internal (T5Pass, IRecording) PassFor(BatchShape shape)
    {
        if (kept is { } k && k.Pass.Shape == shape) return (k.Pass, k.Run);
        DropKept();
        kept = WorkMemory.Build(weights, $"scoring {shape}", w =>
        {
            // Host-visible, so a scoring batch begins without a staging copy that would wait for the queue.
            var prompts = shape.PromptLength > 0 ? w.Backend.Floats((long)shape.NumPrompts * shape.PromptLength * w.Config.DModel, "prompts", hostVisible: true) : null;
            var pass = new T5Pass(w, shape, ActivationMode.Inference, prompts);
            return (pass, w.Backend.Record(pass.EmitForward), prompts);
        });
        return (kept.Value.Pass, kept.Value.Run);
    }

    void DropKept()
    {
        if (kept is { } k)
        {
            k.Run.Dispose();
            k.Pass.Dispose();
            k.Prompts?.Dispose();
        }
        kept = null;
    }

    public void Dispose() => DropKept();
}

/// <summary>One batch's scoring begun by <see cref="Scorer.Begin"/> (or
/// PromptModel.BeginScore): submit it whole or advance it in slices, then
/// read <see cref="Results"/>.</summary>
public sealed class ScoringBatch : Submission
{
    readonly T5Pass pass;
    readonly HostBatch host;
    readonly IReadOnlyList<EncodedExample> batch;
    ScoreResult[]? results;

    internal ScoringBatch(IRecording recording, T5Pass pass, HostBatch host, IReadOnlyList<EncodedExample> batch) : base(recording) =>
        (this.pass, this.host, this.batch) = (pass, host, batch);

    /// <summary>Each example's log-likelihood, in batch order; readable once complete.</summary>
    public ScoreResult[] Results
    {
        get
        {
            if (results is null)
            {
                RequireComplete("the scores");
                results = Read();
            }
            return results;
        }
    }

    /// <summary>Keeps the results before the scorer reuses the pass's buffers for the next batch.</summary>
    internal void Finish()
    {
        if (IsComplete) _ = Results;
    }

    ScoreResult[] Read() => Sum(pass.ReadLogProbs(), host.Shape.TargetLength, batch);

    /// <summary>Each example's log-likelihood from the per-token log-probabilities of its row.</summary>
    internal static ScoreResult[] Sum(float[] lp, int ld, IReadOnlyList<EncodedExample> batch)
    {
        var result = new ScoreResult[batch.Count];
        for (int i = 0; i < batch.Count; i++)
        {
            double sum = 0;
            for (int t = 0; t < batch[i].TargetIds.Length; t++) sum += lp[i * ld + t];
            // Log-softmax of finite logits is finite; anything else means the model overflowed.
            if (!double.IsFinite(sum)) throw new NonFiniteOutputException("the log-likelihood of a target", sum);
            result[i] = new ScoreResult(sum, batch[i].TargetIds.Length);
        }
        return result;
    }
}

/// <summary>How likely the model finds one example's target given its input.</summary>
/// <param name="LogProb">the sum of the target tokens' natural-log probabilities (eos included).</param>
/// <param name="Tokens">how many target tokens were summed, to normalise by length.</param>
public readonly record struct ScoreResult(double LogProb, int Tokens)
{
    /// <summary>This result as the line <c>vkprompt score</c> prints for example
    /// <paramref name="index"/> (and the C ABI's vkp_score returns): {"index", "logprob", "tokens"}.</summary>
    public string JsonLine(int index) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{{\"index\": {index}, \"logprob\": {LogProb:R}, \"tokens\": {Tokens}}}");
}
