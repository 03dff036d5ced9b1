using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

/// <summary>
/// A model split across devices (<c>--pipeline</c>): consecutive layers on each stage's backend
/// (<see cref="LayerRange"/>), each stage holding only its own weights, and the number of
/// micro-batches a batch is cut into so the stages work at once (<see cref="PipelineStep"/>).
/// The prompt and the optimizer live on the first stage, whose layers embed the prompt.
/// </summary>
internal sealed class ModelPipeline : IDisposable
{
    /// <summary>Each stage's weights, in the order the data flows; their backends are the stages' devices.</summary>
    public IReadOnlyList<T5Weights> Stages { get; }
    /// <summary>How many micro-batches a batch is cut into (fewer where the batch has fewer rows).</summary>
    public int MicroBatches { get; }
    public T5Config Config => Stages[0].Config;

    /// <param name="ckpt">the checkpoint the weights are read from.</param>
    /// <param name="backends">one per stage, in order; the caller owns them.</param>
    /// <param name="precision">how the matrices are stored.</param>
    /// <param name="microBatches">micro-batches per batch; null: one per stage.</param>
    /// <param name="ranges">each stage's layers; null: <see cref="Balance"/>'s.</param>
    public ModelPipeline(T5Checkpoint ckpt, IReadOnlyList<Backend> backends, WeightPrecision precision, int? microBatches = null, IReadOnlyList<LayerRange>? ranges = null)
        : this(ckpt.Config, backends.Count, precision, microBatches, ranges, (s, layers) => new T5Weights(ckpt, backends[s], precision, layers))
    {
    }

    /// <summary>A pipeline of <paramref name="config"/>'s shapes whose weights hold no values
    /// (<see cref="T5Weights.Unloaded(T5Config, TraceBackend, WeightPrecision, LayerRange?)"/>), one stage on each trace backend: the memory plan
    /// builds a pipeline's step and scoring pass on it to count what each stage allocates.</summary>
    public static ModelPipeline Unloaded(T5Config config, IReadOnlyList<TraceBackend> backends, WeightPrecision precision, int? microBatches = null,
                                         IReadOnlyList<LayerRange>? ranges = null) =>
        new(config, backends.Count, precision, microBatches, ranges, (s, layers) => T5Weights.Unloaded(config, backends[s], precision, layers));

    ModelPipeline(T5Config config, int count, WeightPrecision precision, int? microBatches, IReadOnlyList<LayerRange>? ranges, Func<int, LayerRange, T5Weights> open)
    {
        ranges ??= Balance(config, precision, count);
        Check(config, ranges, count);
        MicroBatches = microBatches ?? count;
        if (MicroBatches < 1) throw new ArgumentOutOfRangeException(nameof(microBatches), microBatches, "a pipeline needs at least one micro-batch");
        var stages = new List<T5Weights>();
        try
        {
            for (int s = 0; s < count; s++) stages.Add(open(s, ranges[s]));
        }
        catch
        {
            foreach (var w in stages) w.Dispose();
            throw;
        }
        Stages = stages;
    }

    static void Check(T5Config config, IReadOnlyList<LayerRange> ranges, int stages)
    {
        int layers = config.NumLayers + config.NumDecoderLayers;
        if (stages < 2) throw new ArgumentException($"a pipeline has at least two stages; got {stages}");
        if (stages > layers) throw new ArgumentException($"a pipeline of {stages} stages needs at least as many layers; the model has {layers} ({config.NumLayers} encoder, {config.NumDecoderLayers} decoder)");
        if (ranges.Count != stages) throw new ArgumentException($"{ranges.Count} layer ranges for {stages} stages");
        for (int s = 0; s < stages; s++)
            if (ranges[s].First != (s == 0 ? 0 : ranges[s - 1].End) || ranges[s].End <= ranges[s].First || ranges[s] != LayerRange.Of(config, ranges[s].First, ranges[s].End))
                throw new ArgumentException($"stage {s}'s {ranges[s]} does not continue the layers before it");
        if (ranges[^1].End != layers) throw new ArgumentException($"the stages end at layer {ranges[^1].End - 1}, not the model's last, {layers - 1}");
    }

    /// <summary>
    /// The balance rule: consecutive layers (encoder blocks, then decoder blocks) cut into
    /// <paramref name="stages"/> non-empty ranges so that the largest stage's weights, in bytes
    /// as stored at <paramref name="precision"/> (<see cref="T5Weights.Bytes"/>, with the
    /// embedding, head, final norms and bias tables each stage needs), are as small as they can be;
    /// of equal cuts, the earliest. Activations are not weighed: they depend on the batch, which
    /// the placement does not know.
    /// </summary>
    public static IReadOnlyList<LayerRange> Balance(T5Config config, WeightPrecision precision, int stages)
    {
        int n = config.NumLayers + config.NumDecoderLayers;
        if (stages < 1 || stages > n) throw new ArgumentException($"cannot cut {n} layers into {stages} stages");
        var cost = new long[n + 1, n + 1];
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j <= n; j++)
                cost[i, j] = T5Weights.Bytes(config, precision, LayerRange.Of(config, i, j));
        // best[k, j]: the smallest largest stage of layers 0..j-1 in k stages; cut[k, j] where the last begins.
        var best = new long[stages + 1, n + 1];
        var cut = new int[stages + 1, n + 1];
        for (int k = 0; k <= stages; k++)
            for (int j = 0; j <= n; j++) best[k, j] = long.MaxValue;
        best[0, 0] = 0;
        for (int k = 1; k <= stages; k++)
            for (int j = k; j <= n; j++)
                for (int i = k - 1; i < j; i++)
                {
                    if (best[k - 1, i] == long.MaxValue) continue;
                    long worst = Math.Max(best[k - 1, i], cost[i, j]);
                    if (worst < best[k, j]) (best[k, j], cut[k, j]) = (worst, i);
                }
        var ranges = new LayerRange[stages];
        for (int k = stages, end = n; k >= 1; end = cut[k, end], k--)
            ranges[k - 1] = LayerRange.Of(config, cut[k, end], end);
        return ranges;
    }

    public void Dispose()
    {
        foreach (var w in Stages) w.Dispose();
    }
}
