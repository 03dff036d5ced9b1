using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model.Backends;

/// <summary>
/// The Vulkan backend: op calls append dispatches to the command graph being recorded, and a
/// recording is replayed as a whole (one submit, no host round trip inside it). Weight tables
/// are <see cref="SplitTensor"/>s, in whatever precision they were created with.
/// </summary>
public sealed class GpuBackend(GpuContext ctx, bool ownsContext = false) : Backend
{
    CommandGraph? recording;

    /// <summary>The device the backend computes on: disposed with the backend where it was made
    /// for it (<c>ownsContext</c>, as for a device the library opened itself), else the host's,
    /// to dispose after the backend.</summary>
    public GpuContext Context => ctx;
    /// <inheritdoc/>
    public override string Name => $"{ctx.Capabilities.Name} (Vulkan, {ctx.Capabilities.DriverName})";

    sealed class GpuTensor(GpuBuffer buffer, long length) : Tensor(buffer.Name, length, buffer.Storage)
    {
        public readonly GpuBuffer Buffer = buffer;
        public override void Dispose() => Buffer.Dispose();
    }

    sealed class GpuTable(SplitTensor split, string name) : Tensor(name, (long)split.Rows * split.Cols)
    {
        public readonly SplitTensor Split = split;
        public override void Dispose() => Split.Dispose();
    }

    sealed class GraphRecording(CommandGraph graph) : IRecording
    {
        public GpuTicket Submit(ReadOnlySpan<GpuWait> waits) => graph.Submit(waits);
        public SliceReport Advance(TimeSpan budget, ReadOnlySpan<GpuWait> waits) => graph.Advance(budget.TotalMilliseconds, waits);
        public IReadOnlyList<DispatchTiming> Timings => graph.Timings;
        public IReadOnlyList<SliceTiming> SliceTimings => graph.SliceTimings;
        public void Dispose() => graph.Dispose();
    }

    /// <summary>The device buffer behind <paramref name="t"/>, for a host's own commands.</summary>
    internal static GpuBufferRange Range(Tensor t) => new(Buf(t).Handle, 0, (ulong)Buf(t).Bytes);

    static GpuBuffer Buf(Tensor t) => t switch
    {
        GpuTensor g => g.Buffer,
        GpuTable { Split: { Chunks.Count: 1, Precision: WeightPrecision.Fp32 } } s => s.Split.Chunks[0].Buffer,
        GpuTable s => throw new ArgumentException($"{t.Name} is a split, 16-bit or int8 table ({s.Split}); only MatMul (as B) and Embedding read those"),
        _ => throw new ArgumentException($"{t.Name} belongs to another backend"),
    };

    CommandGraph G => recording ?? throw new InvalidOperationException("GPU ops must be called inside Backend.Record");

    internal override Tensor Floats(long length, string name, bool hostVisible = false, ActivationPrecision storage = ActivationPrecision.Fp32) =>
        Made(new GpuTensor(GpuBuffer.Activations(ctx, length, storage, name, hostVisible), length));

    /// <summary>The device plan's choice (<see cref="DevicePlan.Activations"/>).</summary>
    private protected override ActivationPrecision DefaultActivations => ctx.Plan.Activations;
    private protected override bool SupportsActivations(ActivationPrecision p) => p.IsSupported(ctx.Capabilities);
    internal override Tensor Ints(long length, string name, bool hostVisible = false) => Made(new GpuTensor(new GpuBuffer(ctx, length * 4, name, hostVisible), length));
    internal override Tensor Table(int rows, int cols, string name, WeightPrecision precision = WeightPrecision.Fp32)
    {
        precision.Require(ctx.Capabilities);
        return Made(new GpuTable(new SplitTensor(ctx, rows, cols, name, ctx.Plan.StoredPrecision(precision), precision), name));
    }

    /// <inheritdoc/>
    internal override void EnsureFits(Func<long> need, string work) => ctx.Memory.EnsureFits(need, work);

    internal override void Upload(Tensor t, ReadOnlySpan<float> data, long offset = 0)
    {
        if (t is GpuTable table)
        {
            int cols = table.Split.Cols;
            if (offset % cols != 0 || data.Length % cols != 0) throw new ArgumentException("table uploads are whole rows");
            table.Split.UploadRows((int)(offset / cols), data);
        }
        else if (t.Storage == ActivationPrecision.Fp32) Buf(t).Upload(data, offset);
        else
        {
            // 16-bit activations take the values their kernels would store (ActivationPrecisions.Round).
            var halves = new ushort[data.Length];
            ActivationPrecisions.Encode(data, halves, t.Storage);
            Buf(t).Upload<ushort>(halves, offset);
        }
    }

    internal override void Upload(Tensor t, ReadOnlySpan<int> data) => Buf(t).Upload(data);
    internal override void Download(Tensor t, Span<float> data, long offset = 0)
    {
        if (t.Storage == ActivationPrecision.Fp32)
        {
            Buf(t).Download(data, offset);
            return;
        }
        var halves = new ushort[data.Length];
        Buf(t).Download<ushort>(halves, offset);
        ActivationPrecisions.Decode(halves, data, t.Storage);
    }

    internal override IRecording Record(Action body)
    {
        if (recording is not null) throw new InvalidOperationException("recordings do not nest");
        var graph = new CommandGraph(ctx);
        recording = graph;
        try { body(); }
        catch { graph.Dispose(); throw; }
        finally { recording = null; }
        return Made(new GraphRecording(graph));
    }

    internal override IDisposable Phase(string name) => G.Phase(name);

    /// <inheritdoc/>
    public override (long Current, long Peak) MemoryUse => (ctx.Memory.BytesInUse, ctx.Memory.PeakBytesInUse);
    /// <inheritdoc/>
    public override void ResetPeakMemory() => ctx.Memory.ResetPeak();

    internal override void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec spec, MatMulEpilogueOperands<Tensor>? epilogue = null)
    {
        var s = StoredAs(spec, a, b, c, b is GpuTable, epilogue);
        var ops = epilogue?.Select(Buf);
        if (b is not GpuTable { Split: var split })
        {
            MatMulKernel.Run(G, Buf(a), Buf(b), Buf(c), s, epilogue: ops);
            return;
        }
        GpuBuffer? Scales(int chunk) => split.Precision == WeightPrecision.Int8 ? split.Scales[chunk] : null;
        if (split.Chunks.Count == 1)
        {
            MatMulKernel.Run(G, Buf(a), split.Chunks[0].Buffer, Buf(c), s, split.Precision, Scales(0), ops);
            return;
        }
        // A table too large for one binding is split by rows. Its rows are either the output
        // columns (y·Eᵀ: each chunk fills a column range of C) or the reduction (dlogits·E: each
        // chunk adds a partial sum over its slice of K).
        int cols = split.Cols;
        bool rowsAreN = s.BStrideK == 1 && s.BStrideN == cols;
        bool rowsAreK = s.BStrideN == 1 && s.BStrideK == cols;
        if (s.Batch1 * s.Batch2 != 1 || s.BOffset != 0 || !(rowsAreN || rowsAreK))
            throw new NotSupportedException($"split table {b.Name} can only be the B of an unbatched A·Bᵀ or A·B");
        // Partial sums over K would each be dropped and added to D; column ranges finish whole.
        if (rowsAreK && ops is not null)
            throw new NotSupportedException($"split table {b.Name} sums its chunks onto C, which an epilogue cannot follow");
        for (int i = 0; i < split.Chunks.Count; i++)
        {
            var (chunk, firstRow, rows) = split.Chunks[i];
            var part = rowsAreN
                ? s with { N = rows, COffset = s.COffset + firstRow }
                    : s with { K = rows, AOffset = s.AOffset + firstRow * s.AStrideK, Accumulate = s.Accumulate || i > 0 };
            MatMulKernel.Run(G, Buf(a), chunk, Buf(c), part, split.Precision, Scales(i), ops);
        }
    }

    /// <summary>Tunes the products (<see cref="MatMulTuner"/>) where <see cref="MatMulTuner.Enabled"/>
    /// says so (<see cref="DevicePlan.TunesProducts"/>).</summary>
    internal override bool TunesMatMul => MatMulTuner.Enabled(ctx);

    internal override void TuneMatMul(IReadOnlyList<TracedProduct> products)
    {
        if (TunesMatMul) MatMulTuner.Tune(ctx, products.Select(p => (p.Spec, p.Weight ?? WeightPrecision.Fp32)));
    }

    internal override void RmsNorm(Tensor x, Tensor w, Tensor y, int rows, int dim, float eps) => RmsNormKernel.Forward(G, Buf(x), Buf(w), Buf(y), rows, dim, eps);
    internal override void RmsNormBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, int rows, int dim, float eps, bool accumulate) =>
        RmsNormKernel.Backward(G, Buf(x), Buf(w), Buf(dy), Buf(dx), rows, dim, eps, accumulate);
    internal override void AttentionSoftmax(Tensor scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, AttentionShape shape, ProbsDropout<Tensor>? dropout = null) =>
        AttentionSoftmaxKernel.Forward(G, Buf(scores), buckets is null ? null : Buf(buckets), biasWeight is null ? null : Buf(biasWeight), keyMask is null ? null : Buf(keyMask), shape,
                                       Buf(dropout));
    internal override void SoftmaxBackward(Tensor probs, Tensor grad, int rows, int length, ProbsDropout<Tensor>? dropout = null) =>
        SoftmaxBackwardKernel.Backward(G, Buf(probs), Buf(grad), rows, length, Buf(dropout));
    static ProbsDropout<GpuBuffer>? Buf(ProbsDropout<Tensor>? d) => d is { } x ? new(x.Rate, Buf(x.Seed), x.Stream, Buf(x.Dropped)) : null;
    internal override void FusedAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask,
                                        FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) =>
        FusedAttentionKernel.Forward(G, Buf(q), Buf(k), Buf(v), Buf(o), Buf(logSumExp), Opt(buckets), Opt(biasWeight), Opt(keyMask), shape, dropoutRate, Opt(seed), stream);
    internal override void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
                                                Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) =>
        FusedAttentionKernel.Backward(G, Buf(q), Buf(k), Buf(v), Buf(o), Buf(logSumExp), Buf(dO), Buf(dq), Buf(dk), Buf(dv), Opt(buckets), Opt(biasWeight), Opt(keyMask),
                                      shape, dropoutRate, Opt(seed), stream);
    static GpuBuffer? Opt(Tensor? t) => t is null ? null : Buf(t);

    /// <summary>The device plan's choice (<see cref="DevicePlan.FusesAttentionByDefault"/>).</summary>
    private protected override bool FusesAttentionByDefault(AttentionShape scores) => ctx.Plan.FusesAttentionByDefault(scores);
    internal override void Relu(Tensor x, Tensor y, int n, DropoutMask<Tensor>? dropout = null) => ReluKernel.Forward(G, Buf(x), Buf(y), n, Buf(dropout));
    internal override void ReluBackward(Tensor x, Tensor dy, Tensor dx, int n, DropoutMask<Tensor>? dropout = null) =>
        ReluKernel.Backward(G, Buf(x), Buf(dy), Buf(dx), n, Buf(dropout));
    internal override void GatedActivation(Tensor a, Tensor b, Tensor y, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null) =>
        GatedActivationKernel.Forward(G, Buf(a), Buf(b), Buf(y), n, activation, Buf(dropout));
    internal override void GatedActivationBackward(Tensor a, Tensor b, Tensor dy, Tensor da, Tensor db, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null) =>
        GatedActivationKernel.Backward(G, Buf(a), Buf(b), Buf(dy), Buf(da), Buf(db), n, activation, Buf(dropout));
    static DropoutMask<GpuBuffer>? Buf(DropoutMask<Tensor>? d) => d?.Select(Buf);
    internal override void Copy(Tensor src, Tensor dst) => G.Copy(Buf(src), Buf(dst), src.Storage.Bytes(Math.Min(src.Length, dst.Length)));
    internal override void Zero(Tensor t) => G.Fill(Buf(t));
    internal override void Embedding(Tensor table, Tensor ids, Tensor? prompts, Tensor? promptIndex, Tensor output, int batch, int length, int promptLength, int dim) =>
        EmbeddingKernel.Forward(G, ((GpuTable)table).Split, Buf(ids), prompts is null ? null : Buf(prompts), promptIndex is null ? null : Buf(promptIndex), Buf(output), batch, length, promptLength, dim);
    internal override void PromptGradient(Tensor dX, Tensor promptIndex, Tensor dPrompts, int batch, int length, int promptLength, int dim) =>
        EmbeddingKernel.PromptGradient(G, Buf(dX), Buf(promptIndex), Buf(dPrompts), batch, length, promptLength, dim);
    internal override void CrossEntropy(Tensor logits, Tensor targets, Tensor logprobs, int rows, int vocab) =>
        CrossEntropyKernel.Forward(G, Buf(logits), Buf(targets), Buf(logprobs), rows, vocab);
    internal override void CrossEntropyBackward(Tensor logits, Tensor targets, Tensor dlogits, int rows, int vocab) =>
        CrossEntropyKernel.Backward(G, Buf(logits), Buf(targets), Buf(dlogits), rows, vocab);
    internal override void Argmax(Tensor logits, Tensor ids, int rows, int vocab) => ArgmaxKernel.Forward(G, Buf(logits), Buf(ids), rows, vocab);
    internal override void Dropout(Tensor x, int n, float rate, Tensor seed, uint stream, Tensor? output = null) =>
        DropoutKernel.Forward(G, Buf(x), n, rate, Buf(seed), stream, output is null ? null : Buf(output));
    internal override void DropoutBackward(Tensor dy, int n, float rate, Tensor seed, uint stream, Tensor? dx = null) =>
        DropoutKernel.Backward(G, Buf(dy), n, rate, Buf(seed), stream, dx is null ? null : Buf(dx));

    internal override void Adafactor(Tensor param, Tensor grad, Tensor state, Tensor update, int rows, int cols, AdafactorSettings settings) =>
        AdafactorKernel.Step(G, Buf(param), Buf(grad), Buf(state), Buf(update), rows, cols, settings);

    /// <inheritdoc/>
    public override void Dispose()
    {
        if (ownsContext) ctx.Dispose();
    }
}
