using System.Runtime.InteropServices;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;

namespace VkPrompt.Model.Backends;

/// <summary>
/// The CPU reference backend (<c>--device cpu</c>): every op is the plain C# reference of the
/// matching kernel, run at once. Slow and exact; the yardstick for the Vulkan backend, and a
/// fallback for machines with no Vulkan driver. fp16, bf16 and int8 weights are emulated: they
/// are kept as floats rounded to those formats (int8: quantised row by row and multiplied back
/// by the row's scale), the values a device widens them to.
/// </summary>
public sealed class CpuBackend : Backend
{
    long current, peak;

    /// <inheritdoc/>
    public override string Name => "cpu (reference)";

    sealed class CpuTensor(string name, long length, bool isInt, CpuBackend owner, WeightPrecision precision = WeightPrecision.Fp32, int cols = 1,
                           ActivationPrecision storage = ActivationPrecision.Fp32) : Tensor(name, length, storage)
    {
        public readonly float[] F = isInt ? [] : new float[length];
        public readonly int[] I = isInt ? new int[length] : [];
        /// <summary>Values are rounded to this as they are uploaded, as a device storing halves would.</summary>
        public readonly WeightPrecision Precision = precision;
        /// <summary>A table's row length: int8 rounds whole rows, each with its own scale.</summary>
        public readonly int Cols = cols;

        public override void Dispose() => owner.current -= Storage.Bytes(Length);
    }

    Tensor Track(CpuTensor t)
    {
        current += t.Storage.Bytes(t.Length);
        peak = Math.Max(peak, current);
        return t;
    }

    static float[] F(Tensor t) => ((CpuTensor)t).F;
    static int[] I(Tensor t) => ((CpuTensor)t).I;

    internal override Tensor Floats(long length, string name, bool hostVisible = false, ActivationPrecision storage = ActivationPrecision.Fp32) =>
        Track(new CpuTensor(name, Fitting(length, name), false, this, storage: storage));

    /// <summary>Rounds what an op wrote into <paramref name="t"/> to the tensor's storage, as a
    /// device's kernel narrows it on store; the values then read back are the stored ones. A
    /// 16-bit tensor is emulated as floats that hold only what 16 bits can.</summary>
    static void Stored(Tensor t)
    {
        if (t.Storage != ActivationPrecision.Fp32) ActivationPrecisions.Round(F(t), t.Storage);
    }
    internal override Tensor Ints(long length, string name, bool hostVisible = false) => Track(new CpuTensor(name, Fitting(length, name), true, this));

    /// <summary>The reference backend's tensors are .NET arrays: a longer one is work too large for
    /// it, said as a Vulkan device says a buffer exceeds its largest allocation, not an overflow.</summary>
    static long Fitting(long length, string name) => length <= Array.MaxLength ? length
        : throw GpuException.TooLarge($"buffer {name} of {length} elements exceeds the largest array the cpu backend can hold ({Array.MaxLength})");
    internal override Tensor Table(int rows, int cols, string name, WeightPrecision precision = WeightPrecision.Fp32) =>
        Track(new CpuTensor(name, (long)rows * cols, false, this, precision, cols));

    internal override void Upload(Tensor t, ReadOnlySpan<float> data, long offset = 0)
    {
        var ct = (CpuTensor)t;
        var dst = ct.F.AsSpan((int)offset, data.Length);
        data.CopyTo(dst);
        if (ct.Storage != ActivationPrecision.Fp32) ActivationPrecisions.Round(dst, ct.Storage);
        else if (ct.Precision != WeightPrecision.Int8) HalfFloat.Round(dst, ct.Precision);
        else if (offset % ct.Cols != 0 || data.Length % ct.Cols != 0) throw new ArgumentException("int8 table uploads are whole rows");
        else Int8Rows.Round(dst, ct.Cols);
    }
    internal override void Upload(Tensor t, ReadOnlySpan<int> data) => data.CopyTo(I(t));
    /// <summary>An int tensor comes back as its raw bits, as a device buffer does (the generator
    /// reads its argmax ids this way).</summary>
    internal override void Download(Tensor t, Span<float> data, long offset = 0)
    {
        var source = t is CpuTensor { I.Length: > 0 } ints ? MemoryMarshal.Cast<int, float>(ints.I.AsSpan()) : F(t).AsSpan();
        source.Slice((int)offset, data.Length).CopyTo(data);
    }

    internal override IRecording Record(Action body) => new SynchronousRecording(body);
    /// <inheritdoc/>
    public override (long Current, long Peak) MemoryUse => (current, peak);
    /// <inheritdoc/>
    public override void ResetPeakMemory() => peak = current;

    internal override void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec s, MatMulEpilogueOperands<Tensor>? epilogue = null)
    {
        // The gate and the relu are the product stored, then the activation of it over C's
        // elements, as the kernel's epilogue computes them (the gate's C is scratch the backward
        // may or may not read; the relu's C is its own input, as the element-wise kernels allow).
        switch (epilogue)
        {
            case { Kind: MatMulEpilogue.Gate, Gate: { } gate } g:
                MatMul(a, b, c, s);
                GatedActivation(g.Addend!, c, gate.Hidden, DenseC(s), gate.Activation, g.Dropout);
                return;
            case { Kind: MatMulEpilogue.Relu } r:
                MatMul(a, b, c, s);
                Relu(c, c, DenseC(s), r.Dropout);
                return;
            case { Kind: MatMulEpilogue.Residual, Dropout: var mask } e:
                MatMulReference.Run(F(a), F(b), F(c), s with { Epilogue = MatMulEpilogue.Residual }, F(e.Addend!), mask?.Rate ?? 0f, Seed(mask?.Seed), mask?.Stream ?? 0);
                break;
            default:
                MatMulReference.Run(F(a), F(b), F(c), s with { Epilogue = MatMulEpilogue.None });
                break;
        }
        Stored(c);
    }

    // The element-wise pass after the product covers C's elements alone only where they are
    // one block from element 0 (every product with such an epilogue in T5Pass): with gaps between
    // C's rows it would rewrite what lies there, which the kernel never touches.
    static int DenseC(in MatMulSpec s)
    {
        long written = (long)s.Batch1 * s.Batch2 * s.M * s.N;
        if (s.COffset != 0 || s.Extents().C != written)
            throw new NotSupportedException($"the CPU backend's gate and relu epilogues take a C of one dense block from its first element, not {s.Batch1}x{s.Batch2} matrices of {s.M}x{s.N} spanning {s.Extents().C} elements from {s.COffset}");
        return (int)written;
    }

    internal override void RmsNorm(Tensor x, Tensor w, Tensor y, int rows, int dim, float eps)
    {
        RmsNormReference.Forward(F(x), F(w), F(y), rows, dim, eps);
        Stored(y);
    }
    internal override void RmsNormBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, int rows, int dim, float eps, bool accumulate) =>
        RmsNormReference.Backward(F(x), F(w), F(dy), F(dx), rows, dim, eps, accumulate);
    internal override void AttentionSoftmax(Tensor scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, AttentionShape shape, ProbsDropout<Tensor>? dropout = null) =>
        AttentionSoftmaxReference.Forward(F(scores), buckets is null ? null : I(buckets), biasWeight is null ? null : F(biasWeight), keyMask is null ? null : I(keyMask), shape,
                                          dropout?.Rate ?? 0f, Seed(dropout?.Seed), dropout?.Stream ?? 0, dropout is { } d ? F(d.Dropped) : null);
    internal override void SoftmaxBackward(Tensor probs, Tensor grad, int rows, int length, ProbsDropout<Tensor>? dropout = null) =>
        SoftmaxBackwardReference.Backward(F(probs), F(grad), rows, length, dropout?.Rate ?? 0f, Seed(dropout?.Seed), dropout?.Stream ?? 0, dropout is { } d ? F(d.Dropped) : null);
    internal override void FusedAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask,
                                        FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream)
    {
        FusedAttentionReference.Forward(F(q), F(k), F(v), F(o), F(logSumExp), buckets is null ? null : I(buckets), biasWeight is null ? null : F(biasWeight),
                                        keyMask is null ? null : I(keyMask), shape, dropoutRate, Seed(seed), stream);
        Stored(o);
    }
    internal override void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
                                                Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) =>
        FusedAttentionReference.Backward(F(q), F(k), F(v), F(o), F(logSumExp), F(dO), F(dq), F(dk), F(dv), buckets is null ? null : I(buckets),
                                         biasWeight is null ? null : F(biasWeight), keyMask is null ? null : I(keyMask), shape, dropoutRate, Seed(seed), stream);
    static uint Seed(Tensor? seed) => seed is null ? 0 : (uint)I(seed)[0];
    // The activations with dropout are the reference activation and DropoutReference one after
    // the other, the composition the fused kernels must reproduce bit for bit.
    internal override void Relu(Tensor x, Tensor y, int n, DropoutMask<Tensor>? dropout = null)
    {
        ReluReference.Forward(F(x), F(y), n);
        Drop(F(y), n, dropout);
        Stored(y);
    }
    internal override void ReluBackward(Tensor x, Tensor dy, Tensor dx, int n, DropoutMask<Tensor>? dropout = null) =>
        ReluReference.Backward(F(x), Dropped(dy, n, dropout), F(dx), n);
    internal override void GatedActivation(Tensor a, Tensor b, Tensor y, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null)
    {
        GatedActivationReference.Forward(F(a), F(b), F(y), n, activation);
        Drop(F(y), n, dropout);
        Stored(y);
    }
    internal override void GatedActivationBackward(Tensor a, Tensor b, Tensor dy, Tensor da, Tensor db, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null) =>
        GatedActivationReference.Backward(F(a), F(b), Dropped(dy, n, dropout), F(da), F(db), n, activation);
    static void Drop(Span<float> x, int n, DropoutMask<Tensor>? dropout)
    {
        if (dropout is { } d) DropoutReference.Forward(x, n, d.Rate, Seed(d.Seed), d.Stream);
    }
    // dy itself is an input of the backward, left as it is: the mask goes on a copy.
    static float[] Dropped(Tensor dy, int n, DropoutMask<Tensor>? dropout)
    {
        if (dropout is null) return F(dy);
        var copy = F(dy)[..n];
        Drop(copy, n, dropout);
        return copy;
    }
    internal override void Copy(Tensor src, Tensor dst) => F(src).AsSpan(0, (int)Math.Min(src.Length, dst.Length)).CopyTo(F(dst));
    internal override void Zero(Tensor t) { if (t is CpuTensor { I.Length: > 0 } ct) Array.Clear(ct.I); else Array.Clear(F(t)); }
    internal override void Embedding(Tensor table, Tensor ids, Tensor? prompts, Tensor? promptIndex, Tensor output, int batch, int length, int promptLength, int dim) =>
        EmbeddingReference.Forward(F(table), I(ids), prompts is null ? null : F(prompts), promptIndex is null ? null : I(promptIndex), F(output), batch, length, promptLength, dim);
    internal override void PromptGradient(Tensor dX, Tensor promptIndex, Tensor dPrompts, int batch, int length, int promptLength, int dim) =>
        EmbeddingReference.PromptGradient(F(dX), I(promptIndex), F(dPrompts), batch, length, promptLength, dim);
    internal override void CrossEntropy(Tensor logits, Tensor targets, Tensor logprobs, int rows, int vocab) =>
        CrossEntropyReference.Forward(F(logits), I(targets), F(logprobs), rows, vocab);
    internal override void CrossEntropyBackward(Tensor logits, Tensor targets, Tensor dlogits, int rows, int vocab) =>
        CrossEntropyReference.Backward(F(logits), I(targets), F(dlogits), rows, vocab);
    internal override void Argmax(Tensor logits, Tensor ids, int rows, int vocab) => ArgmaxReference.Forward(F(logits), I(ids), rows, vocab);
    internal override void Dropout(Tensor x, int n, float rate, Tensor seed, uint stream, Tensor? output = null) =>
        DropoutReference.Forward(Into(x, n, output), n, rate, (uint)I(seed)[0], stream);
    internal override void DropoutBackward(Tensor dy, int n, float rate, Tensor seed, uint stream, Tensor? dx = null) =>
        DropoutReference.Backward(Into(dy, n, dx), n, rate, (uint)I(seed)[0], stream);

    // The reference works in place: an output of its own starts as a copy of the input.
    static float[] Into(Tensor x, int n, Tensor? output)
    {
        if (output is null) return F(x);
        F(x).AsSpan(0, n).CopyTo(F(output));
        return F(output);
    }

    internal override void Adafactor(Tensor param, Tensor grad, Tensor state, Tensor update, int rows, int cols, AdafactorSettings settings) =>
        AdafactorReference.Step(F(param), F(grad), F(state), rows, cols, settings);

    /// <inheritdoc/>
    public override void Dispose() { }
}
