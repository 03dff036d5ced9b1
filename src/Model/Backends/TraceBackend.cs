using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model.Backends;

/// <summary>One matrix product a program emitted: its spec, the precision its B is stored in
/// where B is a frozen weight (null where it is an fp32 activation), what it is
/// (<see cref="TraceBackend"/> names it from its operands) and the phase it was emitted in.</summary>
internal sealed record TracedProduct(MatMulSpec Spec, WeightPrecision? Weight, string Name, string Phase)
{
    /// <summary>2·M·N·K·Batch1·Batch2.</summary>
    public long Flops => 2L * Spec.M * Spec.N * Spec.K * Spec.Batch1 * Spec.Batch2;
}

/// <summary>
/// A backend that computes nothing and holds no memory: it runs a program (such as
/// <see cref="T5Pass"/>'s) only to record the matrix products it emits, in order. That trace
/// is the list of a step's products: <see cref="T5Pass.Trace"/> hands it to the tuner, and
/// <c>vkprompt bench matmul</c> and the kernel benchmarks time what it lists, so no list of a
/// step's products is kept by hand. Every other op is a no-op, except that fused attentions
/// are counted, and so are the bytes of the tensors made (<see cref="BytesAllocated"/>) and of
/// those alive, with their peak, as a device's memory pool would count them
/// (<see cref="MemoryUse"/>): the memory plan (<c>MemoryPlan</c>, <c>vkprompt plan</c>) and
/// <see cref="WorkMemory"/>'s check count a run's memory by running its own code here.
/// </summary>
internal class TraceBackend : Backend
{
    readonly List<TracedProduct> products = new();
    readonly List<string> phases = new();
    readonly Func<AttentionShape, bool>? fusesAttention;
    readonly long tableChunkBytes;
    readonly DevicePlan? plan;
    // While a recording is made: its fp16 copies as HalfCopies makes them, a buffer per operand
    // position each time a larger one is needed, all kept by the recording.
    (long[] Largest, List<Empty> Buffers)? copies;

    /// <param name="fusesAttention">which attentions run fused, as the backend the program will
    /// run on answers it (<see cref="Backend.FusesAttention"/>); null: as
    /// <see cref="Backend.AttentionFusion"/> says, with no attention fused by default.</param>
    /// <param name="tableChunkBytes">the largest buffer a weight table's chunk may be on the device
    /// the count stands for (<see cref="SplitTensor.Layout"/>: its binding range and largest
    /// allocation); null: a table is one buffer.</param>
    /// <param name="plan">the plan of the device the count stands for, whose matrix-unit products
    /// read fp16 copies of their operands that a recording keeps (<see cref="HalfCopies"/>,
    /// counted by <see cref="MatMulKernel.CopiedOperands"/>); null: none.</param>
    public TraceBackend(Func<AttentionShape, bool>? fusesAttention = null, long? tableChunkBytes = null, DevicePlan? plan = null)
    {
        this.fusesAttention = fusesAttention;
        this.tableChunkBytes = tableChunkBytes ?? long.MaxValue;
        this.plan = plan;
        // The given answer is the whole choice: no setting of this backend's may override it.
        if (fusesAttention is not null) AttentionFusion = AttentionFusion.Auto;
    }

    /// <summary>Every product emitted so far, in order.</summary>
    public IReadOnlyList<TracedProduct> Products => products;

    /// <summary>Fused attentions emitted so far, forward and backward.</summary>
    public int FusedAttentions { get; private set; }

    private protected override bool FusesAttentionByDefault(AttentionShape scores) => fusesAttention?.Invoke(scores) ?? false;

    sealed class Empty(string name, long length, WeightPrecision? table = null, ActivationPrecision storage = ActivationPrecision.Fp32) : Tensor(name, length, storage)
    {
        public readonly WeightPrecision? Table = table;
        // The buffers it stands for, counted while it lives (Counted); none for a view.
        public (TraceBackend Owner, long Rounded, long Requested)? Held;
        public override void Dispose()
        {
            if (Held is not { } h) return;
            Held = null;
            h.Owner.current -= h.Rounded;
            h.Owner.currentRequested -= h.Requested;
        }
    }

    sealed class PhaseScope(List<string> phases) : IDisposable
    {
        public void Dispose() => phases.RemoveAt(phases.Count - 1);
    }

    /// <summary>Bytes the tensors made so far would take on a device, each rounded up to
    /// <see cref="BufferAlignment"/> (<see cref="WorkMemory.Bytes"/> counts a build's need with it).</summary>
    public long BytesAllocated { get; private set; }

    long current, peak, currentRequested, peakRequested;

    /// <summary>The device memory the tensors alive now would take, each buffer rounded up to
    /// <see cref="BufferAlignment"/>, and the most it has been since the backend was made or
    /// <see cref="ResetPeakMemory"/>: what a <see cref="GpuBackend"/>'s <see cref="Backend.MemoryUse"/>
    /// reports for the same program (<see cref="MemoryPool.BytesInUse"/> and its peak: buffers as
    /// the driver sizes them, which is at most this where it rounds a buffer to no more than 256
    /// bytes), the fp16 copies of matrix-unit products included where a plan is given.</summary>
    public override (long Current, long Peak) MemoryUse => (current, peak);

    /// <summary><see cref="MemoryUse"/> with each buffer as many bytes as asked for, unrounded:
    /// where a driver sizes buffers as asked (lavapipe), exactly what its pool counts.</summary>
    public (long Current, long Peak) RequestedMemoryUse => (currentRequested, peakRequested);

    /// <summary>Buffers made so far (a table's chunks and scales each count).</summary>
    public int BuffersMade { get; private set; }

    /// <inheritdoc/>
    public override void ResetPeakMemory()
    {
        peak = current;
        peakRequested = currentRequested;
    }

    /// <summary>The alignment the count rounds each buffer to: the largest offset alignment Vulkan
    /// lets a driver ask of storage buffers (minStorageBufferOffsetAlignment is at most 256), so
    /// the count is not below what a memory pool packs the same buffers into.</summary>
    public const long BufferAlignment = 256;

    /// <summary>Counts <paramref name="buffers"/>, the device buffers <paramref name="t"/> stands
    /// for, until <paramref name="t"/> is disposed.</summary>
    Empty Counted(Empty t, params ReadOnlySpan<long> buffers)
    {
        long rounded = 0, requested = 0;
        foreach (long bytes in buffers)
        {
            rounded += (bytes + BufferAlignment - 1) / BufferAlignment * BufferAlignment;
            requested += bytes;
        }
        BytesAllocated += rounded;
        BuffersMade += buffers.Length;
        t.Held = (this, rounded, requested);
        peak = Math.Max(peak, current += rounded);
        peakRequested = Math.Max(peakRequested, currentRequested += requested);
        return t;
    }

    public override string Name => "trace";
    internal override Tensor Floats(long length, string name, bool hostVisible = false, ActivationPrecision storage = ActivationPrecision.Fp32) =>
        Counted(new Empty(name, length, storage: storage), storage.Bytes(Math.Max(1, length)));
    internal override Tensor Ints(long length, string name, bool hostVisible = false) => Counted(new Empty(name, length), length * sizeof(int));
    /// <summary>A table counted as the device's <see cref="SplitTensor"/> allocates it: its
    /// chunks, and an int8 chunk's scales.</summary>
    internal override Tensor Table(int rows, int cols, string name, WeightPrecision precision = WeightPrecision.Fp32) =>
        Counted(new Empty(name, (long)rows * cols, precision),
                [.. SplitTensor.Layout(rows, cols, precision, tableChunkBytes, name).SelectMany(c => c.ScaleBytes > 0 ? new[] { c.Bytes, c.ScaleBytes } : [c.Bytes])]);
    internal override void Upload(Tensor t, ReadOnlySpan<float> data, long offset = 0) { }
    internal override void Upload(Tensor t, ReadOnlySpan<int> data) { }
    internal override void Download(Tensor t, Span<float> data, long offset = 0) { }

    internal override IRecording Record(Action body)
    {
        var outer = copies;
        var made = (Largest: new long[2], Buffers: new List<Empty>());
        copies = made;
        try { body(); }
        finally { copies = outer; }
        return new SynchronousRecording(() => { }, new Owned(made.Buffers));
    }

    sealed class Owned(List<Empty> buffers) : IDisposable
    {
        public void Dispose() => buffers.ForEach(b => b.Dispose());
    }

    /// <summary>Counts the fp16 copies a device's product <paramref name="s"/> would make, as
    /// <see cref="MatMulKernel.RunOnMatrixUnits"/> and <see cref="HalfCopies.Of"/> make them.</summary>
    void CountHalfCopies(in MatMulSpec s, WeightPrecision? weight)
    {
        if (plan is null || copies is not { } made) return;
        var b = weight is { } w ? plan.StoredPrecision(w) : WeightPrecision.Fp32;
        if (!plan.OnMatrixUnits(s, b)) return;
        var (copyA, copyB) = MatMulKernel.CopiedOperands(plan, s, b);
        var (aExtent, bExtent, _) = s.Extents();
        void Copy(int operand, long length)
        {
            long bytes = ToHalfKernel.OutputBytes(length);
            if (bytes <= made.Largest[operand]) return;
            made.Largest[operand] = bytes;
            made.Buffers.Add(Counted(new Empty($"fp16 copy of {(operand == 0 ? "A" : "B")}", bytes / 2), bytes));
        }
        if (copyA) Copy(0, aExtent - s.AOffset);
        if (copyB) Copy(1, bExtent - s.BOffset);
    }

    internal override IDisposable Phase(string name)
    {
        phases.Add(name);
        return new PhaseScope(phases);
    }


    internal override void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec spec, MatMulEpilogueOperands<Tensor>? epilogue = null)
    {
        var weight = ((Empty)b).Table;
        var s = StoredAs(spec, a, b, c, weight is not null, epilogue);
        CountHalfCopies(s, weight);
        string phase = phases.Count > 0 ? phases[^1] : "";
        // A block re-run inside the backward (Phases.Recompute) is a forward again.
        products.Add(new TracedProduct(s, weight, ProductName(a, b, weight is not null, phase == T5Pass.Phases.Backward), phase));
    }

    /// <summary>What a product is, from its operands' names: a weight's product by the weight
    /// ("enc q", "xattn k", "dec wo", "lm head"), with "dX" where the backward carries a
    /// gradient back through it (dX = dY·W); a product of two activations as "A·B" with the
    /// block number left out ("enc.q·enc.k", "d_probs·dec.xk"), so that the same product of
    /// every block has one name.</summary>
    static string ProductName(Tensor a, Tensor b, bool weightB, bool backward)
    {
        if (!weightB) return $"{Unnumbered(a.Name)}·{Unnumbered(b.Name)}";
        string name = WeightName(b.Name);
        return backward ? name + " dX" : name;
    }

    /// <summary>"enc3.q" -> "enc.q": the per-block buffers of a stored pass are numbered.</summary>
    static string Unnumbered(string tensor)
    {
        int dot = tensor.IndexOf('.', StringComparison.Ordinal);
        if (dot < 0) return tensor;
        return tensor[..dot].TrimEnd("0123456789".ToCharArray()) + tensor[dot..];
    }

    /// <summary>A <see cref="T5Names"/> weight as a table row names it: the stack ("enc", "dec",
    /// "xattn" for the cross-attention) and the projection; the embedding and the LM head, which
    /// only the LM head's products read, "lm head".</summary>
    static string WeightName(string tensor)
    {
        if (tensor is T5Names.Shared or T5Names.LmHead) return "lm head";
        var parts = tensor.Split('.');
        // [stack, "block", i, "layer", j, module, projection, "weight"]
        if (parts.Length != 8 || parts[^1] != "weight") return tensor;
        string site = parts[5] == "EncDecAttention" ? "xattn" : parts[0] == "encoder" ? "enc" : "dec";
        return $"{site} {parts[6]}";
    }

    internal override void RmsNorm(Tensor x, Tensor w, Tensor y, int rows, int dim, float eps) { }
    internal override void RmsNormBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, int rows, int dim, float eps, bool accumulate) { }
    internal override void AttentionSoftmax(Tensor scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, AttentionShape shape, ProbsDropout<Tensor>? dropout = null) { }
    internal override void SoftmaxBackward(Tensor probs, Tensor grad, int rows, int length, ProbsDropout<Tensor>? dropout = null) { }
    internal override void FusedAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask,
                                        FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) => FusedAttentions++;
    internal override void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
                                                Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) => FusedAttentions++;
    internal override void Relu(Tensor x, Tensor y, int n, DropoutMask<Tensor>? dropout = null) { }
    internal override void ReluBackward(Tensor x, Tensor dy, Tensor dx, int n, DropoutMask<Tensor>? dropout = null) { }
    internal override void GatedActivation(Tensor a, Tensor b, Tensor y, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null) { }
    internal override void GatedActivationBackward(Tensor a, Tensor b, Tensor dy, Tensor da, Tensor db, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null) { }
    internal override void Copy(Tensor src, Tensor dst) { }
    internal override void Embedding(Tensor table, Tensor ids, Tensor? prompts, Tensor? promptIndex, Tensor output, int batch, int length, int promptLength, int dim) { }
    internal override void PromptGradient(Tensor dX, Tensor promptIndex, Tensor dPrompts, int batch, int length, int promptLength, int dim) { }
    internal override void CrossEntropy(Tensor logits, Tensor targets, Tensor logprobs, int rows, int vocab) { }
    internal override void CrossEntropyBackward(Tensor logits, Tensor targets, Tensor dlogits, int rows, int vocab) { }
    internal override void Argmax(Tensor logits, Tensor ids, int rows, int vocab) { }
    internal override void Dropout(Tensor x, int n, float rate, Tensor seed, uint stream, Tensor? output = null) { }
    internal override void DropoutBackward(Tensor dy, int n, float rate, Tensor seed, uint stream, Tensor? dx = null) { }
    internal override void Zero(Tensor t) { }
    internal override void Adafactor(Tensor param, Tensor grad, Tensor state, Tensor update, int rows, int cols, AdafactorSettings settings) { }
    public override void Dispose() { }
}
