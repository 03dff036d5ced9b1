using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>The FLOP formula of the benchmarks against the matrix products T5Pass actually
/// emits, counted by a backend that computes nothing.</summary>
public sealed class StepFlopsTests
{
    /// <summary>Counts 2·M·N·K·batches of every MatMul and ignores every other op; tensors hold no data.</summary>
    sealed class CountingBackend : Backend
    {
        public long Flops { get; private set; }

        sealed class Empty(string name, long length) : Tensor(name, length)
        {
            public override void Dispose() { }
        }

        sealed class Emitted : IRecording
        {
            public void Run() { }
            public IReadOnlyList<DispatchTiming> Timings => [];
            public void Dispose() { }
        }

        public override string Name => "counting";
        public override Tensor Floats(long length, string name, bool hostVisible = false) => new Empty(name, length);
        public override Tensor Ints(long length, string name, bool hostVisible = false) => new Empty(name, length);
        public override Tensor Table(int rows, int cols, string name, WeightPrecision precision = WeightPrecision.Fp32) => new Empty(name, (long)rows * cols);
        public override void Upload(Tensor t, ReadOnlySpan<float> data, long offset = 0) { }
        public override void Upload(Tensor t, ReadOnlySpan<int> data) { }
        public override void Download(Tensor t, Span<float> data, long offset = 0) { }

        /// <summary>Emits the body once, which is when the products are counted.</summary>
        public override IRecording Record(Action body)
        {
            body();
            return new Emitted();
        }

        public override (long Current, long Peak) MemoryUse => (0, 0);
        public override void ResetPeakMemory() { }
        public override void MatMul(Tensor a, Tensor b, Tensor c, in MatMulSpec s) => Flops += 2L * s.M * s.N * s.K * s.Batch1 * s.Batch2;
        public override void RmsNorm(Tensor x, Tensor w, Tensor y, int rows, int dim, float eps) { }
        public override void RmsNormBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, int rows, int dim, float eps, bool accumulate) { }
        public override void AttentionSoftmax(Tensor scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, AttentionShape shape, ProbsDropout<Tensor>? dropout = null) { }
        public override void SoftmaxBackward(Tensor probs, Tensor grad, int rows, int length, ProbsDropout<Tensor>? dropout = null) { }
        // The count is of the unfused products; the test pins this backend to unfused (whatever
        // VKPROMPT_ATTENTION says), so a call here means T5Pass fused anyway and the count would be wrong.
        public override void FusedAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask,
                                            FlashAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) => throw new NotSupportedException();
        public override void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
                                                    Tensor? buckets, Tensor? biasWeight, Tensor? keyMask, FlashAttentionShape shape, float dropoutRate, Tensor? seed, uint stream) =>
            throw new NotSupportedException();
        public override void Relu(Tensor x, Tensor y, int n) { }
        public override void ReluBackward(Tensor x, Tensor dy, Tensor dx, int n) { }
        public override void GatedGelu(Tensor a, Tensor b, Tensor y, int n) { }
        public override void GatedGeluBackward(Tensor a, Tensor b, Tensor dy, Tensor da, Tensor db, int n) { }
        public override void Add(Tensor x, Tensor y, int n, float alpha = 1f) { }
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

    // Every dimension distinct and inner != d_model, so a formula that swapped two would fail.
    static T5Config Config(bool gated) => ModelTestFiles.Tiny(gated) with { DModel = 20, DKv = 7, NumHeads = 3, DFf = 44, VocabSize = 53, NumLayers = 3, NumDecoderLayers = 2 };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FormulaCountsTheProductsTheStepEmits(bool gated)
    {
        using var dir = new TempDir();
        var config = Config(gated);
        RandomT5.Write(dir.Path, config, seed: 1);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        using var be = new CountingBackend { AttentionFusion = AttentionFusion.Never };
        using var weights = new T5Weights(ckpt, be);
        var shape = new BatchShape(Batch: 3, InputLength: 16, TargetLength: 8, PromptLength: 5);
        using var prompt = be.Floats((long)shape.PromptLength * config.DModel, "prompt");
        using var pass = new T5Pass(weights, shape, ActivationMode.Store, prompt);

        be.Record(pass.EmitForward).Dispose();
        Assert.Equal(StepFlops.Forward(config, shape), be.Flops);

        long forward = be.Flops;
        be.Record(pass.EmitBackward).Dispose();
        // VkPrompt's backward also forms the query gradient of the bottom cross-attention, which
        // no gradient of the prompt depends on and the formula leaves out: dq = dS·k and dq·Wq.
        long inner = config.InnerDim, rows = (long)shape.Batch * shape.TargetLength;
        long bottomCrossQuery = 2 * rows * shape.EncoderLength * inner + 2 * rows * config.DModel * inner;
        Assert.Equal(StepFlops.Backward(config, shape) + bottomCrossQuery, be.Flops - forward);
    }

    [Fact]
    public void T5BaseStepAtTheGpuBenchmarkShapeIsAboutNineTeraflop()
    {
        // Batch 32, input 512 + prompt 100, target 8 (tools/device-bench.sh): a hand count of
        // the encoder's linear layers alone, 12 layers of 2·(32·612)·768·(4·768 + 3·2048) twice
        // (forward and backward), is 6.65e12; attention and the decoder add the rest.
        var flops = StepFlops.Total(T5Config.Named("t5-base"), new BatchShape(32, 512, 8, 100));
        Assert.InRange(flops, 7.0e12, 1.2e13);
    }
}
