using VkPrompt.Model.Backends;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model;

/// <summary>
/// Greedy decoding with a key/value cache: the encoder runs once, each decoder layer's cross
/// keys and values are projected once, and every new token costs one decoder step over a
/// single query position that attends to the cached keys of the positions before it.
/// One recording per step index (its key length differs) is kept and replayed for later
/// batches of the same shape. The tensors the full forward keeps in its backend's activations'
/// storage (<see cref="Backend.Activations"/>: the normed input, q, the attention context, the
/// feed-forward's activations, and the keys and values, here the caches) are stored so here too,
/// so decoding computes what the teacher-forced pass does; x, the scores and the logits stay fp32.
/// </summary>
internal sealed class Generator : IDisposable
{
    readonly T5Weights w;
    readonly Backend be;
    readonly T5Config c;
    readonly int batch, maxLen, d, inner;
    readonly T5Pass encoder;
    readonly IRecording encoderRun;
    readonly List<Tensor> owned = new();
    readonly Tensor currentIds, next, x, norm, q, ctx, probs, ffA, ffB, ffH, final, logits;
    readonly Tensor[] kCache, vCache, crossK, crossV;
    readonly Tensor?[] buckets;
    readonly IRecording?[] steps;
    IRecording? crossRun;
    readonly Tensor? prompts;

    public BatchShape Shape => encoder.Shape;

    /// <param name="weights">the model's weights, on the backend the generator computes on.</param>
    /// <param name="shape">batch and encoder shape (TargetLength is unused here).</param>
    /// <param name="maxNewTokens">the most tokens generated per example, eos included.</param>
    public Generator(T5Weights weights, BatchShape shape, int maxNewTokens)
    {
        w = weights; be = weights.Backend; c = weights.Config;
        batch = shape.Batch; maxLen = Math.Max(1, maxNewTokens); d = c.DModel; inner = c.NumHeads * c.DKv;
        if (shape.PromptLength > 0)
            // Host-visible, like every input here: beginning a decoding then needs no staging
            // copy, which would wait for the queue a host shares.
            prompts = Own(be.Floats((long)shape.NumPrompts * shape.PromptLength * d, "prompts", hostVisible: true));
        encoder = new T5Pass(weights, shape with { TargetLength = HostBatch.LengthQuantum }, ActivationMode.Inference, prompts);
        encoderRun = be.Record(encoder.EmitEncoder);
        int le = shape.EncoderLength;
        currentIds = Own(be.Ints(batch, "current_ids", hostVisible: true));
        next = Own(be.Ints(batch, "next_ids", hostVisible: true));
        x = F(batch * d, "x"); norm = A(batch * d, "norm"); q = A(batch * inner, "q"); ctx = A(batch * inner, "ctx");
        probs = F((long)batch * c.NumHeads * Math.Max(maxLen, le), "probs");
        ffA = A(batch * c.DFf, "ff_a"); ffB = c.IsGatedAct ? A(batch * c.DFf, "ff_b") : ffA; ffH = A(batch * c.DFf, "ff_h");
        final = F(batch * d, "final"); logits = F((long)batch * c.VocabSize, "logits");
        kCache = Layers(i => A((long)batch * maxLen * inner, $"k_cache{i}"));
        vCache = Layers(i => A((long)batch * maxLen * inner, $"v_cache{i}"));
        crossK = Layers(i => A((long)batch * le * inner, $"cross_k{i}"));
        crossV = Layers(i => A((long)batch * le * inner, $"cross_v{i}"));
        buckets = new Tensor?[maxLen];
        steps = new IRecording?[maxLen];
    }

    Tensor Own(Tensor t) { owned.Add(t); return t; }
    Tensor F(long n, string name) => Own(be.Floats(n, name));
    // A block activation, stored as the full forward stores it.
    Tensor A(long n, string name) => Own(be.Floats(n, name, storage: be.Activations));
    Tensor[] Layers(Func<int, Tensor> make) => Enumerable.Range(0, c.NumDecoderLayers).Select(make).ToArray();

    /// <summary>Greedy continuation of each example (stops at eos or after maxNewTokens), with
    /// <paramref name="promptSet"/> as <see cref="Scorer.Score"/> takes it, of the generator's
    /// shape, blocking until it is done. Returns the generated ids without the decoder start
    /// token and without eos.</summary>
    public List<int>[] Generate(IReadOnlyList<EncodedExample> examples, PromptSet? promptSet, IReadOnlyList<int>? promptIndex = null)
    {
        var decoding = Begin(examples, promptSet, promptIndex);
        decoding.Wait();
        return decoding.Outputs;
    }

    /// <summary>Prepares the decoding of <paramref name="examples"/> and returns it unsubmitted
    /// (<see cref="Decoding"/>); the decoding before must be complete. Inputs, prompts and ids go
    /// to host-visible memory, so nothing here waits for the GPU.</summary>
    public Decoding Begin(IReadOnlyList<EncodedExample> examples, PromptSet? promptSet, IReadOnlyList<int>? promptIndex = null, bool ownsGenerator = false)
    {
        if (current is { IsComplete: false, IsStarted: true })
            throw new InvalidOperationException("cannot begin another decoding while the last is in flight: wait for it first");
        int lin = HostBatch.Round(examples.Max(e => e.InputIds.Length));
        if (lin != Shape.InputLength)
            throw new ArgumentException($"inputs pad to {lin} tokens but this generator was built for {Shape.InputLength}");
        if ((promptSet?.Length ?? 0, promptSet?.Count ?? 1) != (Shape.PromptLength, Shape.NumPrompts))
            throw new ArgumentException($"this generator was built for {Shape.NumPrompts} prompt(s) of {Shape.PromptLength} rows");
        if (prompts is not null) be.Upload(prompts, promptSet!.Data);
        // Only the encoder runs from the batch: targets (validation data has them, of any length)
        // are left out rather than laid into the placeholder decoder positions.
        var inputs = examples.Select(e => e with { TargetIds = [] }).ToList();
        encoder.Load(HostBatch.Build(inputs, Shape.PromptLength, Shape.NumPrompts, promptIndex, batch, c.DecoderStartTokenId, targetLength: encoder.Shape.TargetLength,
                                     promptLengths: promptSet?.MaskedLengths));
        crossRun ??= be.Record(EmitCrossProjections);
        return current = new Decoding(this, examples.Count, ownsGenerator);
    }

    Decoding? current;

    internal int BatchRows => batch;
    internal int MaxNewTokens => maxLen;
    internal int EosTokenId => c.EosTokenId;
    internal int StartTokenId => c.DecoderStartTokenId;

    /// <summary>The recording of stage <paramref name="stage"/> of a decoding: -2 the encoder,
    /// -1 the cross-attention projections, t &gt;= 0 the decoder step that yields token t.</summary>
    internal IRecording Stage(int stage) => stage switch
    {
        -2 => encoderRun,
        -1 => crossRun!,
        _ => steps[stage] ??= RecordStep(stage),
    };

    /// <summary>Lays the ids the step that yields the next token reads (host-visible memory).</summary>
    internal void SetCurrentIds(int[] ids) => be.Upload(currentIds, ids);

    /// <summary>The ids the last complete step chose (host-visible memory).</summary>
    internal int[] NextIds()
    {
        var raw = new float[batch];
        be.Download(next, raw);
        return raw.Select(BitConverter.SingleToInt32Bits).ToArray();
    }

    void EmitCrossProjections()
    {
        int rows = batch * Shape.EncoderLength;
        for (int i = 0; i < c.NumDecoderLayers; i++)
        {
            var cross = w.Decoder[i].CrossAttention!;
            be.MatMul(encoder.EncoderOutput, cross.K, crossK[i], MatMulSpec.Rows(rows, inner, d, transposeB: true));
            be.MatMul(encoder.EncoderOutput, cross.V, crossV[i], MatMulSpec.Rows(rows, inner, d, transposeB: true));
        }
    }

    IRecording RecordStep(int t)
    {
        var table = Own(be.Ints(t + 1, $"buckets{t}", hostVisible: true));
        be.Upload(table, RelativePosition.Table(1, t + 1, false, c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance, queryOffset: t));
        buckets[t] = table;
        return be.Record(() => EmitStep(t, table));
    }

    void EmitStep(int t, Tensor table)
    {
        float eps = (float)c.LayerNormEpsilon;
        int le = Shape.EncoderLength;
        var heads = new AttentionSpecs(batch, c.NumHeads, c.DKv);
        var linear = (int outDim, int inDim) => MatMulSpec.Rows(batch, outDim, inDim, transposeB: true);
        be.Embedding(w.Shared, currentIds, null, null, x, batch, 1, 0, d);
        for (int i = 0; i < c.NumDecoderLayers; i++)
        {
            var blk = w.Decoder[i];
            be.RmsNorm(x, blk.AttnNorm, norm, batch, d, eps);
            be.MatMul(norm, blk.SelfAttention.Q, q, linear(inner, d));
            // This position's key and value go into row t of the cache.
            var intoCache = linear(inner, d) with { CStrideM = maxLen * inner, COffset = t * inner };
            be.MatMul(norm, blk.SelfAttention.K, kCache[i], intoCache);
            be.MatMul(norm, blk.SelfAttention.V, vCache[i], intoCache);
            be.MatMul(q, kCache[i], probs, heads.QK(1, t + 1, 1, maxLen));
            be.AttentionSoftmax(probs, table, blk.PositionBias, null, new AttentionShape(batch, c.NumHeads, 1, t + 1));
            be.MatMul(probs, vCache[i], ctx, heads.PV(1, t + 1, 1, maxLen));
            be.MatMul(ctx, blk.SelfAttention.O, x, linear(d, inner) with { Accumulate = true });

            be.RmsNorm(x, blk.CrossNorm!, norm, batch, d, eps);
            be.MatMul(norm, blk.CrossAttention!.Q, q, linear(inner, d));
            be.MatMul(q, crossK[i], probs, heads.QK(1, le, 1, le));
            be.AttentionSoftmax(probs, null, null, encoder.EncoderMask, new AttentionShape(batch, c.NumHeads, 1, le));
            be.MatMul(probs, crossV[i], ctx, heads.PV(1, le, 1, le));
            be.MatMul(ctx, blk.CrossAttention.O, x, linear(d, inner) with { Accumulate = true });

            be.RmsNorm(x, blk.FfNorm, norm, batch, d, eps);
            var ff = blk.FeedForward;
            be.MatMul(norm, ff.Wi, ffA, linear(c.DFf, d));
            if (ff.Wi1 is not null)
            {
                be.MatMul(norm, ff.Wi1, ffB, linear(c.DFf, d));
                be.GatedActivation(ffA, ffB, ffH, batch * c.DFf, c.GateActivation);
            }
            else be.Relu(ffA, ffH, batch * c.DFf);
            be.MatMul(ffH, ff.Wo, x, linear(d, c.DFf) with { Accumulate = true });
        }
        be.RmsNorm(x, w.DecoderFinalNorm, final, batch, d, eps);
        be.MatMul(final, w.LmHead ?? w.Shared, logits, MatMulSpec.Rows(batch, c.VocabSize, d, transposeB: true) with { Alpha = c.TieWordEmbeddings ? 1f / MathF.Sqrt(d) : 1f });
        be.Argmax(logits, next, batch, c.VocabSize);
    }

    public void Dispose()
    {
        foreach (var s in steps) s?.Dispose();
        crossRun?.Dispose();
        encoderRun.Dispose();
        encoder.Dispose();
        foreach (var t in owned) t.Dispose();
    }
}

/// <summary>Greedy decoding of any number of examples, batched. A generator (an encoder pass and a
/// key/value cache, with a recording per decoding step) is kept while batches pad to its input
/// length: keeping one per length seen held them all to the end, memory that grew with every
/// distinct length in the file.</summary>
internal static class GreedyDecoder
{
    /// <summary>Decodes <paramref name="examples"/> with one prompt for all of them.</summary>
    public static IEnumerable<(int Index, List<int> Ids)> Run(T5Weights weights, IReadOnlyList<EncodedExample> examples,
                                                            float[]? prompt, int batchSize, int maxNewTokens) =>
        Run(weights, examples, prompt is null ? null : PromptSet.Stack([prompt], weights.Config.DModel), null, batchSize, maxNewTokens);

    /// <summary>Decodes <paramref name="examples"/>, example i with prompt promptIndex[i] of
    /// <paramref name="prompts"/> (several tasks in one batch; null index: prompt 0).</summary>
    public static IEnumerable<(int Index, List<int> Ids)> Run(T5Weights weights, IReadOnlyList<EncodedExample> examples,
                                                            PromptSet? prompts, IReadOnlyList<int>? promptIndex, int batchSize, int maxNewTokens)
    {
        if (prompts is not null && promptIndex is not null && promptIndex.Count != examples.Count)
            throw new ArgumentException($"{promptIndex.Count} prompt indices for {examples.Count} examples");
        Generator? gen = null;
        batchSize = Math.Min(batchSize, examples.Count);
        try
        {
            for (int start = 0; start < examples.Count; start += batchSize)
            {
                var chunk = examples.Skip(start).Take(batchSize).ToList();
                int lin = HostBatch.Round(chunk.Max(e => e.InputIds.Length));
                if (gen?.Shape.InputLength != lin)
                {
                    gen?.Dispose();
                    gen = null; // so that finally does not dispose it again if the next one cannot be made
                    var shape = new BatchShape(batchSize, lin, 1, prompts?.Length ?? 0, prompts?.Count ?? 1);
                    gen = WorkMemory.Build(weights, $"greedy decoding of {shape with { TargetLength = maxNewTokens }}", w => new Generator(w, shape, maxNewTokens));
                }
                var outputs = gen.Generate(chunk, prompts, promptIndex?.Skip(start).Take(chunk.Count).ToList());
                for (int i = 0; i < chunk.Count; i++) yield return (start + i, outputs[i]);
            }
        }
        finally
        {
            gen?.Dispose();
        }
    }
}
