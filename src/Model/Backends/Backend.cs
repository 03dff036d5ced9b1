using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model.Backends;

/// <summary>A device buffer of floats or ints owned by a <see cref="Backend"/>.</summary>
internal abstract class Tensor(string name, long length, ActivationPrecision storage = ActivationPrecision.Fp32) : IDisposable
{
    public string Name { get; } = name;
    public long Length { get; } = length;
    /// <summary>How the tensor stores its elements: 16 bits for the activations a pass keeps so
    /// (<see cref="Backend.Activations"/>), fp32 for every other float tensor.</summary>
    public ActivationPrecision Storage { get; } = storage;
    public abstract void Dispose();
    public override string ToString() => $"{Name}[{Length}]";
}

/// <summary>Work recorded once by <see cref="Backend.Record"/> and run any number of times: as
/// one submit or in slices of a GPU-time budget, each returning a ticket at once (see
/// <see cref="CommandGraph"/>); a run must complete before the next begins.</summary>
internal interface IRecording : IDisposable
{
    /// <summary>Submits the rest of the run after <paramref name="waits"/>; returns at once.</summary>
    GpuTicket Submit(ReadOnlySpan<GpuWait> waits);

    /// <summary>Submits the next ops of the run that fit <paramref name="budget"/>; returns at once.</summary>
    SliceReport Advance(TimeSpan budget, ReadOnlySpan<GpuWait> waits);

    /// <summary>Submits the rest of the run and waits for it.</summary>
    void Run() => Submit([]).Wait();

    /// <summary>Per-op GPU times of the last run, with their phases, where the device profiles
    /// (<see cref="GpuOptions.Profiling"/>); empty otherwise.</summary>
    IReadOnlyList<DispatchTiming> Timings { get; }

    /// <summary>The measured slices of the last completed run (<see cref="CommandGraph.SliceTimings"/>).</summary>
    IReadOnlyList<SliceTiming> SliceTimings { get; }
}

/// <summary>A recording of a backend that computes as its ops are called (the CPU reference, the
/// trace): a submit runs the whole body on the calling thread and returns a complete ticket.</summary>
internal sealed class SynchronousRecording(Action body, IDisposable? owned = null) : IRecording
{
    public GpuTicket Submit(ReadOnlySpan<GpuWait> waits)
    {
        body();
        return default;
    }

    public SliceReport Advance(TimeSpan budget, ReadOnlySpan<GpuWait> waits) => new(Submit(waits), 0, 1, 0, null, null);
    public IReadOnlyList<DispatchTiming> Timings => [];
    public IReadOnlyList<SliceTiming> SliceTimings => [];
    /// <summary>Frees what the recording owns: the trace's count of a device recording's own buffers.</summary>
    public void Dispose() => owned?.Dispose();
}

/// <summary>Whether <see cref="T5Pass"/> runs attention as one fused op
/// (<see cref="Backend.FusedAttention"/>) or as MatMul + AttentionSoftmax + MatMul.</summary>
public enum AttentionFusion
{
    /// <summary>The backend decides per attention from its size (<see cref="Backend.FusesAttention"/>).</summary>
    Auto,
    /// <summary>Every attention runs fused (less memory: no stored probabilities).</summary>
    Fused,
    /// <summary>Every attention runs as separate products and softmax (the probabilities are stored).</summary>
    Unfused,
}

/// <summary>How users spell <see cref="AttentionFusion"/> (the CLI's <c>--attention</c>).</summary>
public static class AttentionFusions
{
    /// <summary>The spellings <see cref="Parse"/> accepts, as the CLI lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["auto", "fused", "unfused"];

    /// <summary>The spelling <see cref="Parse"/> reads back (auto, fused, unfused).</summary>
    public static string Name(this AttentionFusion f) => f switch
    {
        AttentionFusion.Fused => "fused",
        AttentionFusion.Unfused => "unfused",
        _ => "auto",
    };

    /// <summary>auto, fused or unfused as named, in any case; null for anything else.</summary>
    public static AttentionFusion? Parse(string text) => text.ToLowerInvariant() switch
    {
        "auto" => AttentionFusion.Auto,
        "fused" => AttentionFusion.Fused,
        "unfused" => AttentionFusion.Unfused,
        _ => null,
    };

    /// <summary>The message for a spelling <see cref="Parse"/> refuses, from where it came
    /// (<paramref name="setting"/>: a variable or an option).</summary>
    internal static string Invalid(string setting, string text) => $"{setting}={text} is not one of {string.Join(", ", Names)}";
}

/// <summary>
/// The op vocabulary the T5 program is written in, once, for every backend. The Vulkan backend
/// records each call into a command graph that is replayed per step; the CPU backend runs the
/// plain references immediately. Op semantics are those of the kernel and reference pairs in
/// VkPrompt.Runtime (see docs/architecture.md); arguments follow the same order.
/// </summary>
public abstract class Backend : IDisposable
{
    /// <summary>What the backend computes on, for logs and reports (the device and driver, or the CPU reference).</summary>
    public abstract string Name { get; }

    /// <summary>A tensor of <paramref name="length"/> fp32 values (<see cref="Ints"/>: int32),
    /// zero-filled, named <paramref name="name"/> in diagnostics.</summary>
    /// <param name="length">elements.</param>
    /// <param name="name">a name for diagnostics.</param>
    /// <param name="hostVisible">for the small tensors the host writes or reads every step (ids,
    /// masks, per-token log-probabilities): the device reads them in place from mapped memory,
    /// so a step is one submit with no staging copies.</param>
    /// <param name="storage">how the elements are stored: 16 bits for the activations a pass
    /// keeps so (<see cref="Activations"/>); the ops that read or write such a tensor widen and
    /// narrow its elements, and the others refuse it.</param>
    internal abstract Tensor Floats(long length, string name, bool hostVisible = false, ActivationPrecision storage = ActivationPrecision.Fp32);
    internal abstract Tensor Ints(long length, string name, bool hostVisible = false);

    /// <summary>A frozen [rows, cols] weight (a Linear layer's [out, in], an embedding, the LM
    /// head) stored as <paramref name="precision"/>; it may exceed one binding. Only
    /// <see cref="MatMul"/> (as B) and <see cref="Embedding"/> read it, and uploads round to the
    /// precision, so both see the rounded values in fp32.</summary>
    /// <exception cref="GpuException">The device cannot read weights stored that way.</exception>
    internal abstract Tensor Table(int rows, int cols, string name, WeightPrecision precision = WeightPrecision.Fp32);

    internal abstract void Upload(Tensor t, ReadOnlySpan<float> data, long offset = 0);
    internal abstract void Upload(Tensor t, ReadOnlySpan<int> data);
    internal abstract void Download(Tensor t, Span<float> data, long offset = 0);

    /// <summary>A copy of the whole of <paramref name="t"/>.</summary>
    internal float[] Download(Tensor t)
    {
        var data = new float[t.Length];
        Download(t, data);
        return data;
    }

    /// <summary>Runs <paramref name="body"/>'s op calls as one unit that can be replayed. Tensor
    /// contents may change between runs (uploads); shapes and tensors may not.</summary>
    internal abstract IRecording Record(Action body);

    /// <summary>Names the ops emitted inside <see cref="Record"/> until the scope is disposed (a
    /// phase of the program, such as "backward"), so profiled timings add up per phase; scopes
    /// nest. A backend that takes no timings ignores it.</summary>
    internal virtual IDisposable Phase(string name) => NoPhase.Instance;

    sealed class NoPhase : IDisposable
    {
        public static readonly NoPhase Instance = new();
        public void Dispose() { }
    }

    /// <summary>Throws a <see cref="DoesNotFitException"/> naming <paramref name="work"/> where
    /// the device's memory limits (<see cref="GpuOptions.MemoryCapBytes"/>, the heaps' budgets)
    /// leave less than <paramref name="need"/> bytes; <paramref name="need"/> is asked only where
    /// such a limit is set. This default, for backends without device memory, does nothing.</summary>
    internal virtual void EnsureFits(Func<long> need, string work) { }

    // What the backend made while AllOrNothing runs, oldest first; null outside it.
    List<IDisposable>? building;

    /// <summary>Runs <paramref name="build"/>; if it throws, every tensor and recording it made on
    /// this backend is disposed again, newest first, so a failure leaves nothing half-built
    /// (disposing those is idempotent, so what <paramref name="build"/> disposed itself is no matter).</summary>
    internal T AllOrNothing<T>(Func<T> build)
    {
        var outer = building;
        var made = building = new List<IDisposable>();
        try
        {
            var result = build();
            outer?.AddRange(made);
            return result;
        }
        catch
        {
            for (int i = made.Count - 1; i >= 0; i--) made[i].Dispose();
            throw;
        }
        finally { building = outer; }
    }

    /// <summary>Notes <paramref name="made"/>, a tensor or recording this backend just made, for
    /// <see cref="AllOrNothing"/>; backends whose tensors hold memory call it on each.</summary>
    private protected T Made<T>(T made) where T : IDisposable
    {
        building?.Add(made);
        return made;
    }

    /// <summary>Bytes of device memory in use now and at most so far.</summary>
    public abstract (long Current, long Peak) MemoryUse { get; }
    /// <summary>Starts the peak of <see cref="MemoryUse"/> again from the memory in use now, to
    /// measure one phase (a training run after the weights were loaded, say).</summary>
    public abstract void ResetPeakMemory();

    /// <summary>How the passes built on this backend store the activations they keep between ops
    /// (<see cref="ActivationPrecision"/>; <c>--activations</c>): the normed inputs of the
    /// products, q, k, v, the attention contexts and the feed-forward activations. The residual
    /// stream, the encoder and decoder outputs, the logits, the scores and every gradient stay
    /// fp32. Default: what the device plan chooses (<see cref="DevicePlan.Activations"/>), fp32
    /// on the CPU backend.</summary>
    public ActivationPrecision Activations
    {
        get => activations ?? DefaultActivations;
        set => activations = value == ActivationPrecision.Fp32 || SupportsActivations(value) ? value
            : throw new GpuException($"{value.Name()} activations need 16-bit storage buffers (storageBuffer16BitAccess), which {Name} does not support; use fp32");
    }
    ActivationPrecision? activations;

    /// <summary>The <see cref="Activations"/> of a backend that was not told.</summary>
    private protected virtual ActivationPrecision DefaultActivations => ActivationPrecision.Fp32;

    /// <summary>Whether this backend can keep activations as <paramref name="p"/>; the CPU
    /// reference and the trace emulate any.</summary>
    private protected virtual bool SupportsActivations(ActivationPrecision p) => true;

    /// <summary>How <see cref="T5Pass"/> runs attention on this backend; passes built afterwards
    /// follow it (PyTorch's choice of scaled-dot-product kernel is likewise a backend setting).
    /// Default <see cref="AttentionFusion.Auto"/>: the backend decides per attention.</summary>
    public AttentionFusion AttentionFusion { get; set; } = AttentionFusion.Auto;

    /// <summary>Whether an attention whose scores have this shape runs fused, as
    /// <see cref="AttentionFusion"/> says.</summary>
    internal bool FusesAttention(AttentionShape scores) => AttentionFusion switch
    {
        AttentionFusion.Fused => true,
        AttentionFusion.Unfused => false,
        _ => FusesAttentionByDefault(scores),
    };

    /// <summary>The <see cref="AttentionFusion.Auto"/> choice; unfused unless a backend says
    /// otherwise (the GPU backend asks its device plan).</summary>
    private protected virtual bool FusesAttentionByDefault(AttentionShape scores) => false;

    /// <summary>C = Alpha·A·B (+ C); with <paramref name="epilogue"/>, C = D + dropout(Alpha·A·B)
    /// (<see cref="MatMulEpilogue.Residual"/>: a residual branch's projection joining the stream
    /// in its store), or with its gate H = dropout(act(a)·Alpha·A·B), C kept where asked
    /// (<see cref="MatMulEpilogue.Gate"/>: the gated feed-forward's activation in wi_1's store),
    /// or C = dropout(relu(Alpha·A·B)) (<see cref="MatMulEpilogue.Relu"/>: T5 v1.0's activation in
    /// wi's store). The backends set the spec's operand storages (<see cref="MatMulSpec.AStorage"/>
    /// ...) from the tensors' and its epilogue from the operands given (<see cref="StoredAs"/>).</summary>
    internal abstract void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec s, MatMulEpilogueOperands<Tensor>? epilogue = null);

    /// <summary><paramref name="s"/> with the storages of the tensors it multiplies (a weight
    /// table B keeps fp32 there: its precision is the table's) and the epilogue its operands are
    /// for.</summary>
    private protected static MatMulSpec StoredAs(in MatMulSpec s, Tensor a, Tensor b, Tensor c, bool bIsTable, MatMulEpilogueOperands<Tensor>? epilogue) =>
        s with
        {
            AStorage = a.Storage, BStorage = bIsTable ? ActivationPrecision.Fp32 : b.Storage, CStorage = c.Storage,
            Epilogue = epilogue?.Kind ?? MatMulEpilogue.None,
            EpilogueDropout = epilogue?.Dropout is { Rate: > 0 },
        };

    /// <summary>Whether <see cref="TuneMatMul"/> does anything here, so a caller traces a step's
    /// products only for a backend that will tune them.</summary>
    internal virtual bool TunesMatMul => false;
    /// <summary>Called with the trace of a program about to be recorded (<see cref="T5Pass.Trace"/>:
    /// every product it will emit), before the program allocates its tensors: a backend that has
    /// tilings to choose between may time them now, outside any recording, while the most memory
    /// is free. The others, this default, ignore it.</summary>
    internal virtual void TuneMatMul(IReadOnlyList<TracedProduct> products) { }
    internal abstract void RmsNorm(Tensor x, Tensor w, Tensor y, int rows, int dim, float eps);
    internal abstract void RmsNormBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, int rows, int dim, float eps, bool accumulate);
    /// <summary>Attention probabilities in place over the scores; with <paramref name="dropout"/>
    /// the same pass writes the dropped probabilities too (<see cref="ProbsDropout{TBuffer}"/>).</summary>
    internal abstract void AttentionSoftmax(Tensor scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, AttentionShape shape, ProbsDropout<Tensor>? dropout = null);
    /// <summary>The score gradient in place over the probability gradient; with
    /// <paramref name="dropout"/> grad is the gradient of the dropped probabilities, and the same
    /// pass rebuilds them from <paramref name="probs"/> (the probabilities before dropout).</summary>
    internal abstract void SoftmaxBackward(Tensor probs, Tensor grad, int rows, int length, ProbsDropout<Tensor>? dropout = null);
    /// <summary>o = dropout(softmax(q·kᵀ + bias, masked))·v and the per-query logsumexp, without
    /// a score matrix; see FusedAttentionKernel. <paramref name="seed"/> is needed when
    /// <paramref name="dropoutRate"/> &gt; 0 and gives the masks <see cref="Dropout"/> would.</summary>
    internal abstract void FusedAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask,
                                        FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream);
    /// <summary>dq, dk, dv of <see cref="FusedAttention"/> from dO and its q, k, v, o, logsumexp.</summary>
    internal abstract void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
                                                Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream);
    /// <summary>The feed-forward activations and their backward. With <paramref name="dropout"/>
    /// the forward drops its output and the backward takes dy as the gradient of the dropped
    /// output, in the same pass and with the masks <see cref="Dropout"/> would draw.</summary>
    internal abstract void Relu(Tensor x, Tensor y, int n, DropoutMask<Tensor>? dropout = null);
    /// <inheritdoc cref="Relu"/>
    internal abstract void ReluBackward(Tensor x, Tensor dy, Tensor dx, int n, DropoutMask<Tensor>? dropout = null);
    /// <inheritdoc cref="Relu"/>
    internal abstract void GatedActivation(Tensor a, Tensor b, Tensor y, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null);
    /// <inheritdoc cref="Relu"/>
    internal abstract void GatedActivationBackward(Tensor a, Tensor b, Tensor dy, Tensor da, Tensor db, int n, GateActivation activation, DropoutMask<Tensor>? dropout = null);
    internal abstract void Copy(Tensor src, Tensor dst);
    internal abstract void Embedding(Tensor table, Tensor ids, Tensor? prompts, Tensor? promptIndex, Tensor output, int batch, int length, int promptLength, int dim);
    internal abstract void PromptGradient(Tensor dX, Tensor promptIndex, Tensor dPrompts, int batch, int length, int promptLength, int dim);
    internal abstract void CrossEntropy(Tensor logits, Tensor targets, Tensor logprobs, int rows, int vocab);
    /// <summary>d(mean loss)/d logits; the mean is over the batch's non-ignored targets, counted
    /// on the device so a replayed step needs no host round trip.</summary>
    internal abstract void CrossEntropyBackward(Tensor logits, Tensor targets, Tensor dlogits, int rows, int vocab);
    internal abstract void Argmax(Tensor logits, Tensor ids, int rows, int vocab);
    /// <summary>Inverted dropout, into <paramref name="output"/> where given, else in place; the
    /// seed is read from a one-int tensor so a replayed recording draws new masks each step, and
    /// (seed, stream, index) always give the same mask.</summary>
    internal abstract void Dropout(Tensor x, int n, float rate, Tensor seed, uint stream, Tensor? output = null);
    internal abstract void DropoutBackward(Tensor dy, int n, float rate, Tensor seed, uint stream, Tensor? dx = null);
    internal abstract void Zero(Tensor t);
    /// <summary>One Adafactor step on a [rows, cols] parameter; see AdafactorKernel.</summary>
    internal abstract void Adafactor(Tensor param, Tensor grad, Tensor state, Tensor update, int rows, int cols, AdafactorSettings settings);

    /// <summary>Frees what the backend allocated; tensors made on it must not be used afterwards.</summary>
    public abstract void Dispose();
}
