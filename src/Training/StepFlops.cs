using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>
/// Matrix-product FLOPs of one prompt-tuning step (docs/benchmarks.md): the forward of the whole
/// model plus the activation-only backward that carries the loss's gradient to the prompt. Both
/// VkPrompt's bench and the PyTorch peer (tools/peer/peer_bench.py) divide this same count by
/// the step time, so their TFLOP/s compare work, not implementations. Each product of an
/// [m, k] and a [k, n] matrix counts 2·m·k·n; elementwise work, norms, softmaxes and the
/// optimizer are left out (a few per cent of the total at T5 shapes). Work an implementation
/// chooses to redo (recomputed activations) is not counted, so it lowers TFLOP/s.
/// </summary>
internal static class StepFlops
{
    /// <summary>Forward: every block of both stacks and the LM head.</summary>
    public static long Forward(T5Config c, BatchShape s)
    {
        var n = new Counts(c, s);
        return c.NumLayers * n.EncoderLayer(backward: false)
             + c.NumDecoderLayers * n.DecoderLayer(backward: false)
             + n.LmHead;
    }

    /// <summary>
    /// Backward with no weight gradient: each linear layer's input gradient (dy·W) costs its
    /// forward again; each attention product (Q·Kᵀ, P·V) costs twice its forward, as both of its
    /// operands need a gradient. Only the ops on a path from the prompt to the loss count, which
    /// is what autograd runs with frozen weights: the decoder's bottom self-attention (its input
    /// is the decoder embedding alone) and the query side of the bottom cross-attention are left
    /// out. VkPrompt's backward does compute that query gradient (2·B·Ld·d·inner + 2·B·Ld·Le·inner
    /// FLOPs, a fraction of a per cent), and it is not counted for it either.
    /// </summary>
    public static long Backward(T5Config c, BatchShape s)
    {
        var n = new Counts(c, s);
        long bottomSelfAttention = n.SelfAttention(n.DecoderRows, s.TargetLength, backward: true);
        long bottomCrossQuery = n.Linear(n.DecoderRows, c.DModel, c.InnerDim) + n.Products(s.TargetLength, s.EncoderLength);
        return c.NumLayers * n.EncoderLayer(backward: true)
             + c.NumDecoderLayers * n.DecoderLayer(backward: true) - bottomSelfAttention - bottomCrossQuery
             + n.LmHead;
    }

    public static long Total(T5Config c, BatchShape s) => Forward(c, s) + Backward(c, s);

    readonly record struct Counts(T5Config C, BatchShape S)
    {
        public long EncoderRows => (long)S.Batch * S.EncoderLength;
        public long DecoderRows => (long)S.Batch * S.TargetLength;

        public long Linear(long rows, long inDim, long outDim) => 2 * rows * inDim * outDim;

        /// <summary>One per-head product of attention over all heads, Q·Kᵀ or P·V: 2·B·H·lq·lk·d_kv.</summary>
        public long Products(long lq, long lk) => 2 * S.Batch * lq * lk * C.InnerDim;

        /// <summary>Q, K, V and O projections, then scores and context.</summary>
        public long SelfAttention(long rows, long len, bool backward) =>
            4 * Linear(rows, C.DModel, C.InnerDim) + (backward ? 4 : 2) * Products(len, len);

        /// <summary>Q and O on the decoder rows, K and V on the encoder output.</summary>
        long CrossAttention(bool backward) =>
            2 * Linear(DecoderRows, C.DModel, C.InnerDim) + 2 * Linear(EncoderRows, C.DModel, C.InnerDim)
            + (backward ? 4 : 2) * Products(S.TargetLength, S.EncoderLength);

        /// <summary>wi (wi_0 and wi_1 when gated) and wo.</summary>
        long FeedForward(long rows) => ((C.IsGatedAct ? 2 : 1) + 1) * Linear(rows, C.DModel, C.DFf);

        public long EncoderLayer(bool backward) => SelfAttention(EncoderRows, S.EncoderLength, backward) + FeedForward(EncoderRows);

        public long DecoderLayer(bool backward) =>
            SelfAttention(DecoderRows, S.TargetLength, backward) + CrossAttention(backward) + FeedForward(DecoderRows);

        public long LmHead => Linear(DecoderRows, C.DModel, C.VocabSize);
    }
}
