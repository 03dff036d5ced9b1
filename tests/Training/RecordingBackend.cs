using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Tests.Training;

/// <summary>A backend that computes nothing and records what T5Pass emits: every MatMul (its spec
/// and B's precision, or null where B is an activation), how many fused attentions ran, and the
/// products it was offered to tune.
/// Tensors hold no data.</summary>
sealed class RecordingBackend : Backend
{
    public readonly List<(MatMulSpec Spec, WeightPrecision? Weight)> Products = new();
    public int FusedAttentions { get; private set; }

    /// <summary>Each offer of products to tune, and how many products had been recorded by then.</summary>
    public readonly List<(List<(MatMulSpec Spec, WeightPrecision B)> Products, int RecordedBefore)> Tunings = new();

    sealed class Empty(string name, long length, WeightPrecision? table = null) : Tensor(name, length)
    {
        public readonly WeightPrecision? Table = table;
        public override void Dispose() { }
    }

    sealed class Emitted : IRecording
    {
        public void Run() { }
        public IReadOnlyList<DispatchTiming> Timings => [];
        public void Dispose() { }
    }

    public override string Name => "recording";
    public override Tensor Floats(long length, string name, bool hostVisible = false) => new Empty(name, length);
    public override Tensor Ints(long length, string name, bool hostVisible = false) => new Empty(name, length);
    public override Tensor Table(int rows, int cols, string name, WeightPrecision precision = WeightPrecision.Fp32) => new Empty(name, (long)rows * cols, precision);
    public override void Upload(Tensor t, ReadOnlySpan<float> data, long offset = 0) { }
    public override void Upload(Tensor t, ReadOnlySpan<int> data) { }
    public override void Download(Tensor t, Span<float> data, long offset = 0) { }

    public override IRecording Record(Action body)
    {
        body();
        return new Emitted();
    }

    public override (long Current, long Peak) MemoryUse => (0, 0);
    public override void ResetPeakMemory() { }
    public override void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec s) => Products.Add((s, ((Empty)b).Table));
    public override void TuneMatMul(IEnumerable<(MatMulSpec Spec, WeightPrecision B)> products) => Tunings.Add((products.ToList(), Products.Count));
    public override void RmsNorm(Tensor x, Tensor w, Tensor y, int rows, int dim, float eps) { }
    public override void RmsNormBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, int rows, int dim, float eps, bool accumulate) { }
    public override void AttentionSoftmax(Tensor scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, AttentionShape shape, ProbsDropout<Tensor>? dropout = null) { }
    public override void SoftmaxBackward(Tensor probs, Tensor grad, int rows, int length, ProbsDropout<Tensor>? dropout = null) { }
    public override void FusedAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask,
                                        FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) => FusedAttentions++;
    public override void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
                                                Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, FusedAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) => FusedAttentions++;
    public override void Relu(Tensor x, Tensor y, int n, DropoutMask<Tensor>? dropout = null) { }
    public override void ReluBackward(Tensor x, Tensor dy, Tensor dx, int n, DropoutMask<Tensor>? dropout = null) { }
    public override void GatedGelu(Tensor a, Tensor b, Tensor y, int n, DropoutMask<Tensor>? dropout = null) { }
    public override void GatedGeluBackward(Tensor a, Tensor b, Tensor dy, Tensor da, Tensor db, int n, DropoutMask<Tensor>? dropout = null) { }
    public override void Add(Tensor x, Tensor y, int n, float alpha = 1f, DropoutMask<Tensor>? dropout = null, Tensor? output = null) { }
    public override void Copy(Tensor src, Tensor dst) { }
    public override void Embedding(Tensor table, Tensor ids, Tensor? prompts, Tensor? promptIndex, Tensor output, int batch, int length, int promptLength, int dim) { }
    public override void PromptGradient(Tensor dX, Tensor promptIndex, Tensor dPrompts, int batch, int length, int promptLength, int dim) { }
    public override void CrossEntropy(Tensor logits, Tensor targets, Tensor logprobs, int rows, int vocab) { }
    public override void CrossEntropyBackward(Tensor logits, Tensor targets, Tensor dlogits, int rows, int vocab) { }
    public override void Argmax(Tensor logits, Tensor ids, int rows, int vocab) { }
    public override void Dropout(Tensor x, int n, float rate, Tensor seed, uint stream, Tensor? output = null) { }
    public override void DropoutBackward(Tensor dy, int n, float rate, Tensor seed, uint stream, Tensor? dx = null) { }
    public override void Zero(Tensor t) { }
    public override void Adafactor(Tensor param, Tensor grad, Tensor state, Tensor update, int rows, int cols, AdafactorSettings settings) { }
    public override void Dispose() { }
}
