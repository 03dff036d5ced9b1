using VkPrompt.Model.Backends;

namespace VkPrompt.Model;

/// <summary>
/// Teacher-forced scoring: the summed log-probability of each example's target given its input
/// and (optionally) a soft prompt per example. Passes are recorded once per batch shape and
/// replayed; several prompts (tasks, or an ensemble) can share one batch.
/// </summary>
public sealed class Scorer : IDisposable
{
    readonly T5Weights weights;
    readonly Dictionary<BatchShape, (T5Pass Pass, IRecording Run)> passes = new();
    readonly Dictionary<(int, int), Tensor> promptTensors = new();
    readonly int maxShapes;

    /// <param name="maxShapes">how many batch shapes keep their recorded pass (and its
    /// activations) between calls: more replay more batches without recording, at the memory of
    /// a pass each. Training's validation takes 1, since its passes sit beside the training step's.</param>
    public Scorer(T5Weights weights, int maxShapes = 4)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxShapes, 1);
        this.weights = weights;
        this.maxShapes = maxShapes;
    }

    /// <summary>Batch shapes whose pass is kept now.</summary>
    public int CachedShapes => passes.Count;

    public Backend Backend => weights.Backend;

    /// <summary>Scores one batch, example i with prompt promptIndex[i] of <paramref name="prompts"/>
    /// (null: no prompt; null index: prompt 0).</summary>
    public ScoreResult[] Score(IReadOnlyList<EncodedExample> batch, PromptSet? prompts, IReadOnlyList<int>? promptIndex = null, int? batchSize = null)
    {
        if (prompts is not null && prompts.Data.Length != (long)prompts.Count * prompts.Length * weights.Config.DModel)
            throw new ArgumentException($"the prompts are not of this model's d_model {weights.Config.DModel}");
        var host = HostBatch.Build(batch, prompts?.Length ?? 0, prompts?.Count ?? 1, promptIndex, batchSize, weights.Config.DecoderStartTokenId,
                                   promptLengths: prompts?.MaskedLengths);
        var (pass, run) = PassFor(host.Shape);
        var be = weights.Backend;
        if (prompts is not null) be.Upload(pass.Prompts!, prompts.Data);
        pass.Load(host);
        run.Run();
        var lp = pass.ReadLogProbs();
        int ld = host.Shape.TargetLength;
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

    (T5Pass, IRecording) PassFor(BatchShape shape)
    {
        if (passes.TryGetValue(shape, out var p)) return p;
        // Recorded passes hold activations; keep only a few shapes alive.
        if (passes.Count >= maxShapes)
        {
            foreach (var (pass, rec) in passes.Values) { rec.Dispose(); pass.Dispose(); }
            passes.Clear();
        }
        Tensor? prompt = null;
        if (shape.PromptLength > 0)
        {
            var key = (shape.NumPrompts, shape.PromptLength);
            if (!promptTensors.TryGetValue(key, out prompt))
                promptTensors[key] = prompt = weights.Backend.Floats((long)shape.NumPrompts * shape.PromptLength * weights.Config.DModel, "prompts");
        }
        var newPass = new T5Pass(weights, shape, ActivationMode.Inference, prompt);
        var recording = weights.Backend.Record(newPass.EmitForward);
        passes[shape] = (newPass, recording);
        return (newPass, recording);
    }

    public void Dispose()
    {
        foreach (var (pass, rec) in passes.Values) { rec.Dispose(); pass.Dispose(); }
        passes.Clear();
        foreach (var t in promptTensors.Values) t.Dispose();
        promptTensors.Clear();
    }
}

public readonly record struct ScoreResult(double LogProb, int Tokens);
