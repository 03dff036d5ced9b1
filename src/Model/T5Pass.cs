using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model;

/// <summary>How much of the forward pass is kept for the backward pass.</summary>
public enum ActivationMode
{
    /// <summary>Forward only: one set of scratch buffers is reused by every block.</summary>
    Inference,
    /// <summary>Every block keeps what its input gradient needs.</summary>
    Store,
    /// <summary>Blocks keep only their input; the backward re-runs each block's forward first.</summary>
    Recompute,
}

/// <summary>
/// The T5 program for one <see cref="BatchShape"/>: teacher-forced forward with soft prompts,
/// per-token log-probabilities and loss, and the prompt-only backward (activation gradients
/// only; no weight gradient is ever formed). Written once against <see cref="Backend"/>, so the
/// CPU reference and every Vulkan device run the same sequence of ops.
/// Inputs are uploaded into <see cref="InputIds"/>, <see cref="EncoderMask"/>,
/// <see cref="DecoderIds"/>, <see cref="Targets"/>, <see cref="PromptIndex"/> and the prompt
/// tensor given at construction; then the caller emits <see cref="EmitForward"/> (and
/// <see cref="EmitBackward"/>) inside <see cref="Backend.Record"/>.
/// On a stage of a model split across devices the pass runs the layers its weights hold
/// (<see cref="T5Weights.Layers"/>): its forward starts from the activations uploaded into
/// <see cref="Before"/> instead of the embedding and ends by copying its own into
/// <see cref="After"/>; its backward starts from the gradients uploaded into <see cref="After"/>
/// and ends by copying the gradients of its input into <see cref="Before"/>. The ops between are
/// those the one-device pass runs for those layers, in the same order.
/// </summary>
internal sealed class T5Pass : IDisposable
{
    readonly T5Weights w;
    readonly Backend be;
    readonly T5Config c;
    public BatchShape Shape { get; }
    public ActivationMode Mode { get; }
    /// <summary>Where the pass computes (its weights' backend).</summary>
    public Backend Backend => be;
    readonly int inner, d;
    readonly List<Tensor> owned = new();
    readonly PassScratch? shared;
    readonly LayerRange layers;
    readonly int encFirst, encEnd, decFirst, decEnd;   // the blocks of each stack this pass runs

    public Tensor InputIds { get; }
    public Tensor EncoderMask { get; }
    public Tensor DecoderIds { get; }
    public Tensor Targets { get; }
    public Tensor PromptIndex { get; }
    public Tensor? Prompts { get; }
    /// <summary>log p(target token) per decoder position, 0 where the target is padding.</summary>
    public Tensor LogProbs { get; }
    public Tensor Logits { get; }
    /// <summary>d loss / d prompts, [NumPrompts, P, d]; allocated only when training (on the first stage).</summary>
    public Tensor? PromptGradient { get; }
    /// <summary>Where a stage's input activations come in and their gradients go back out; null
    /// on the first stage (and on one device).</summary>
    public StageCrossing? Before { get; }
    /// <summary>Where a stage's output activations go out and their gradients come back in; null
    /// on the last stage (and on one device).</summary>
    public StageCrossing? After { get; }

    /// <summary>Dropout rate of training passes (0 = off, as in evaluation); the masks come from
    /// <see cref="DropoutSeed"/>, a one-int tensor the caller changes every step.</summary>
    public float DropoutRate { get; }
    public Tensor? DropoutSeed { get; }
    readonly Tensor? droppedProbs;

    readonly Tensor encBuckets, decBuckets;
    readonly AttentionSite encSelf, decSelf, cross;
    readonly Tensor encoderOut;   // final-norm output of the encoder, read by every cross-attention
    readonly Tensor[] encStream, decStream;  // residual stream snapshots, see StreamIndex
    readonly Tensor decFinal;
    readonly BlockScratch? encScratch, decScratch;   // null where the pass runs no block of the stack
    readonly BlockScratch[] encSaved, decSaved;
    readonly Grads? grads;

    /// <summary>Which attentions run fused (<see cref="Backend.FusesAttention"/>, decided when the
    /// pass is built): encoder self-attention, decoder self-attention, cross-attention.</summary>
    public (bool EncoderSelf, bool DecoderSelf, bool Cross) FusedAttention => (encSelf.Fused, decSelf.Fused, cross.Fused);

    int Le => Shape.EncoderLength;
    int Ld => Shape.TargetLength;
    int B => Shape.Batch;

    /// <param name="weights">the weights (of a stage, or all) the pass runs.</param>
    /// <param name="shape">the batch shape.</param>
    /// <param name="mode">what the forward keeps for the backward.</param>
    /// <param name="prompts">the prompts, where the pass embeds the input.</param>
    /// <param name="dropoutRate">the training dropout rate.</param>
    /// <param name="shared">where the pass takes the tensors it shares with the other passes of
    /// a stage (see <see cref="PassScratch"/>); null: it owns every tensor.</param>
    public T5Pass(T5Weights weights, BatchShape shape, ActivationMode mode, Tensor? prompts, float dropoutRate = 0f, PassScratch? shared = null)
    {
        if (shared is not null && shared.Backend != weights.Backend) throw new ArgumentException("the shared scratch is on another backend than the weights");
        this.shared = shared;
        w = weights;
        be = weights.Backend;
        c = weights.Config;
        Shape = shape;
        Mode = mode;
        Activations = be.Activations;
        d = c.DModel;
        inner = c.NumHeads * c.DKv;
        layers = w.Layers;
        (encFirst, encEnd) = layers.EncoderBlocks;
        (decFirst, decEnd) = layers.DecoderBlocks;
        if (layers.EmbedsInput && shape.PromptLength > 0 && prompts is null)
            throw new ArgumentException("a prompt length > 0 needs a prompt tensor");
        if (prompts is not null && prompts.Length != (long)shape.NumPrompts * shape.PromptLength * d)
            throw new ArgumentException($"prompt tensor has {prompts.Length} floats, the shape needs {shape.NumPrompts}x{shape.PromptLength}x{d}");
        Prompts = prompts;

        InputIds = Ints(B * shape.InputLength, "input_ids", hostVisible: true);
        EncoderMask = Ints(B * Le, "encoder_mask", hostVisible: true);
        DecoderIds = Ints(B * Ld, "decoder_input_ids", hostVisible: true);
        Targets = Ints(B * Ld, "targets", hostVisible: true);
        PromptIndex = Ints(B, "prompt_index", hostVisible: true);
        LogProbs = Floats(B * Ld, "logprobs", hostVisible: true);
        Logits = Kept(layers.HasHead ? (long)B * Ld * c.VocabSize : 0, "logits");

        var encScores = new AttentionShape(B, c.NumHeads, Le, Le);
        var decScores = new AttentionShape(B, c.NumHeads, Ld, Ld, Causal: true);
        // Host-visible as the ids are (a few KiB, device-local where the device maps such memory):
        // a pass is built inside calls that must not wait for the queue (a new shape in
        // PromptTrainer.BeginStep, Scorer.Begin, a decoding), and a staging copy would.
        encBuckets = Ints(encScores.Diagonals, "encoder_buckets", hostVisible: true);
        be.Upload(encBuckets, RelativePosition.Table(Le, Le, true, c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance));
        decBuckets = Ints(decScores.Diagonals, "decoder_buckets", hostVisible: true);
        be.Upload(decBuckets, RelativePosition.Table(Ld, Ld, false, c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance));
        // No bias weight here: SelfAttentionForward and -Backward put each block's own in.
        encSelf = Site(encScores, encBuckets, null, EncoderMask);
        decSelf = Site(decScores, decBuckets, null, null);
        cross = Site(new(B, c.NumHeads, Ld, Le), null, null, EncoderMask);

        bool keepStreams = mode != ActivationMode.Inference;
        // Encoder block i reads stream[2i] (attention input) and writes stream[2i+1] (FF input),
        // then stream[2i+2]; decoder blocks have three sublayers, so 3i..3i+3 (counted from the
        // first block the pass runs).
        int encBlocks = encEnd - encFirst, decBlocks = decEnd - decFirst;
        encStream = encBlocks == 0 ? [] : Streams("enc", keepStreams ? 2 * encBlocks + 1 : 3, B * Le, keepStreams);
        decStream = decBlocks == 0 ? [] : Streams("dec", keepStreams ? 3 * decBlocks + 1 : 4, B * Ld, keepStreams);
        // A recomputed decoder block's cross-attention reads the encoder output again in the backward.
        encoderOut = Kept(layers.EndsEncoder || layers.HasDecoderBlocks ? (long)B * Le * d : 0, "encoder_out");
        decFinal = Scratch(layers.HasHead ? (long)B * Ld * d : 0, "decoder_final");

        encScratch = encBlocks == 0 ? null : new BlockScratch(this, "enc", B * Le, encSelf, withCross: false);
        decScratch = decBlocks == 0 ? null : new BlockScratch(this, "dec", B * Ld, decSelf, withCross: true);
        // Stored blocks: the first is the shared scratch itself, the others borrow its transients.
        encSaved = mode == ActivationMode.Store && encScratch is not null
            ? [encScratch, .. Enumerable.Range(encFirst + 1, encBlocks - 1).Select(i => new BlockScratch(this, $"enc{i}", B * Le, encSelf, false, encScratch))] : [];
        decSaved = mode == ActivationMode.Store && decScratch is not null
            ? [decScratch, .. Enumerable.Range(decFirst + 1, decBlocks - 1).Select(i => new BlockScratch(this, $"dec{i}", B * Ld, decSelf, true, decScratch))] : [];
        Before = layers.EmbedsInput ? null : Crossing(layers.First, "before");
        After = layers.HasHead ? null : Crossing(layers.End, "after");
        if (dropoutRate > 0)
        {
            DropoutRate = dropoutRate;
            DropoutSeed = Ints(1, "dropout_seed", hostVisible: true);
            long unfusedScores = Math.Max(UnfusedScores(encSelf), Math.Max(UnfusedScores(decSelf), UnfusedScores(cross)));
            droppedProbs = unfusedScores > 0 ? Scratch(unfusedScores, "dropped_probs") : null;
        }
        if (mode != ActivationMode.Inference)
        {
            PromptGradient = prompts is null || !layers.EmbedsInput ? null : Floats(prompts.Length, "prompt_grad");
            grads = new Grads(this);
        }
    }

    /// <summary>The matrix products this program emits, in order, for a pass built with these
    /// arguments: the forward, then (where <paramref name="mode"/> trains) the backward, traced on
    /// a <see cref="TraceBackend"/> with weights of <paramref name="config"/>'s shapes, which
    /// allocates and computes nothing. The trace is the product list of a step: the trainer has
    /// the tuner measure it before recording the step, and the benchmarks time it.</summary>
    /// <param name="config">the model whose products are traced.</param>
    /// <param name="shape">the batch shape.</param>
    /// <param name="mode">the pass's activation mode (whether it trains, and how).</param>
    /// <param name="dropoutRate">the training dropout rate.</param>
    /// <param name="precision">the weights' precision (the products' B).</param>
    /// <param name="fusesAttention">which attentions run fused on the backend the pass will run on
    /// (its <see cref="Backend.FusesAttention"/>): a fused attention makes no products.</param>
    /// <param name="layers">the layers of a stage; null: all.</param>
    /// <param name="activations">how the pass stores its block activations (the products' operand storages).</param>
    public static IReadOnlyList<TracedProduct> Trace(T5Config config, BatchShape shape, ActivationMode mode, float dropoutRate, WeightPrecision precision,
                                                     Func<AttentionShape, bool> fusesAttention, LayerRange? layers = null,
                                                     ActivationPrecision activations = ActivationPrecision.Fp32)
    {
        using var be = new TraceBackend(fusesAttention) { Activations = activations };
        using var weights = T5Weights.Unloaded(config, be, precision, layers);
        using var prompts = be.Floats((long)shape.NumPrompts * shape.PromptLength * config.DModel, "prompt");
        using var pass = new T5Pass(weights, shape, mode, prompts, dropoutRate);
        be.Record(() =>
        {
            pass.EmitForward();
            if (mode != ActivationMode.Inference) pass.EmitBackward();
        }).Dispose();
        return be.Products;
    }

    /// <summary>Uploads a batch built for this pass's shape.</summary>
    public void Load(HostBatch host)
    {
        if (host.Shape != Shape) throw new ArgumentException($"batch shape {host.Shape} does not match the pass's {Shape}");
        be.Upload(InputIds, host.InputIds);
        be.Upload(EncoderMask, host.EncoderMask);
        be.Upload(DecoderIds, host.DecoderIds);
        be.Upload(Targets, host.Targets);
        be.Upload(PromptIndex, host.PromptIndex);
    }

    /// <summary>Downloads the per-token log-probabilities of the last run.</summary>
    public float[] ReadLogProbs()
    {
        var lp = new float[LogProbs.Length];
        be.Download(LogProbs, lp);
        return lp;
    }

    Tensor Floats(long n, string name, bool hostVisible = false, ActivationPrecision storage = ActivationPrecision.Fp32)
    {
        var t = be.Floats(Math.Max(1, n), name, hostVisible, storage);
        owned.Add(t);
        return t;
    }
    Tensor Ints(long n, string name, bool hostVisible = false) { var t = be.Ints(Math.Max(1, n), name, hostVisible); owned.Add(t); return t; }
    /// <summary>A tensor only one recording (the forward's or the backward's) writes and reads,
    /// whose contents no later recording needs: shared with the stage's other passes where given.</summary>
    Tensor Scratch(long n, string name, ActivationPrecision storage = ActivationPrecision.Fp32) =>
        shared is null ? Floats(n, name, storage: storage) : shared.Floats(Math.Max(1, n), name, storage);
    /// <summary>A tensor the forward writes and the backward reads: the pass's own, unless the
    /// passes sharing scratch run no other pass between a forward and its backward.</summary>
    Tensor Kept(long n, string name, ActivationPrecision storage = ActivationPrecision.Fp32) =>
        shared is { HoldsKept: true } ? Scratch(n, name, storage) : Floats(n, name, storage: storage);

    /// <summary>How the block activations are stored (<see cref="Backend.Activations"/>, read
    /// when the pass is built): the products' normed inputs, q, k, v, the attention contexts and
    /// the feed-forward's activations. Everything else the pass holds is fp32: the residual
    /// stream (a bf16 stream loses the small updates each sublayer adds to it: docs/numerics.md),
    /// the encoder and decoder outputs, the scores and probabilities (the softmax's), the logits
    /// (the loss's) and the gradients.</summary>
    public ActivationPrecision Activations { get; }
    Tensor[] Streams(string prefix, int count, int rows, bool kept) =>
        Enumerable.Range(0, count).Select(i => kept ? Kept((long)rows * d, $"{prefix}_x{i}") : Scratch((long)rows * d, $"{prefix}_x{i}")).ToArray();

    /// <summary>The host-visible tensors of the boundary before layer <paramref name="layer"/>:
    /// the encoder's stream inside the encoder; the encoder output from its end on, which every
    /// stage with decoder blocks reads; and the decoder's stream inside the decoder.</summary>
    StageCrossing Crossing(int layer, string name)
    {
        long enc = (long)B * Le * d, dec = (long)B * Ld * d;
        int n = layers.EncoderLayers;
        return new StageCrossing(layer < n ? Floats(enc, name + ".enc_x", hostVisible: true) : null,
                                 layer >= n ? Floats(enc, name + ".encoder_out", hostVisible: true) : null,
                                 layer > n ? Floats(dec, name + ".dec_x", hostVisible: true) : null);
    }

    /// <summary>One kind of attention of the model: the shape of its scores (lengths, causality),
    /// position bias, key mask, and whether it runs fused. A fused attention keeps its output and
    /// logsumexp for the backward instead of its [B, H, Lq, Lk] probabilities.</summary>
    readonly record struct AttentionSite(AttentionShape Scores, Tensor? Buckets, Tensor? BiasWeight, Tensor? KeyMask, bool Fused)
    {
        public int QueryLength => Scores.QueryLength;
        public int KeyLength => Scores.KeyLength;
    }

    AttentionSite Site(AttentionShape scores, Tensor? buckets, Tensor? biasWeight, Tensor? keyMask) =>
        new(scores, buckets, biasWeight, keyMask, be.FusesAttention(scores));

    /// <summary>Elements of the site's probabilities, 0 when it is fused and never forms them.</summary>
    long UnfusedScores(AttentionSite site) => site.Fused ? 0 : site.Scores.Elements;

    /// <summary>The activations one block produces; reused across blocks unless stored.</summary>
    sealed class BlockScratch
    {
        public readonly Tensor Norm, Q, K, V, Ctx, FfH;
        /// <summary>The gated feed-forward's gate a and product b; null in a relu one, which has no
        /// pre-activation (<see cref="MatMulEpilogue.Relu"/>).</summary>
        public readonly Tensor? FfA, FfB;
        /// <summary>What each attention keeps for its backward: the probabilities, or the
        /// logsumexp (with the output) when it runs fused.</summary>
        public readonly Tensor? Probs, Lse, CrossProbs, CrossLse;
        public readonly Tensor? CrossQ, CrossK, CrossV, CrossCtx;

        /// <param name="p">the pass the scratch belongs to.</param>
        /// <param name="name">the block's name, prefixing its tensors' names.</param>
        /// <param name="rows">token rows of the block's input.</param>
        /// <param name="self">the block's self-attention.</param>
        /// <param name="withCross">a decoder block, which also attends to the encoder.</param>
        /// <param name="transient">a block's scratch whose layer-norm output, attention context
        /// and FF activation output are borrowed: the backward needs none of them (a matmul's
        /// input gradient needs the weight, not the input), so stored blocks keep only the rest.
        /// A fused attention's context is the exception: its backward reads it again; so is a
        /// relu feed-forward's output, which its backward reads in place of the input.</param>
        public BlockScratch(T5Pass p, string name, int rows, AttentionSite self, bool withCross, BlockScratch? transient = null)
        {
            var c = p.c;
            long context = (long)rows * p.inner;
            // A stored block keeps these for the backward; otherwise the backward re-runs the
            // block's forward first (or there is none), and they live within one recording.
            var act = p.Activations;
            Tensor keep(long n, string tensor) => p.Mode == ActivationMode.Store ? p.Kept(n, tensor, act) : p.Scratch(n, tensor, act);
            Tensor Context(bool fused, Tensor? borrowed, string suffix) => fused ? keep(context, name + suffix) : borrowed ?? p.Scratch(context, name + suffix, act);
            Norm = transient?.Norm ?? p.Scratch((long)rows * p.d, name + ".norm", act);
            Q = keep(context, name + ".q");
            K = keep(context, name + ".k");
            V = keep(context, name + ".v");
            (Probs, Lse) = p.AttentionState(self, name, p.Mode == ActivationMode.Store ? (n, t) => p.Kept(n, t) : (n, t) => p.Scratch(n, t));
            Ctx = Context(self.Fused, transient?.Ctx, ".ctx");
            long hidden = (long)rows * c.DFf;
            if (c.IsGatedAct)
            {
                FfA = keep(hidden, name + ".ff_a");
                FfB = keep(hidden, name + ".ff_b");
                FfH = transient?.FfH ?? p.Scratch(hidden, name + ".ff_h", act);
            }
            else
            {
                // The relu's backward reads its output (wi's product with MatMulEpilogue.Relu),
                // which is all the block keeps of its feed-forward; there is no pre-activation.
                FfH = keep(hidden, name + ".ff_h");
            }
            if (withCross)
            {
                CrossQ = keep((long)rows * p.inner, name + ".xq");
                CrossK = keep((long)p.B * p.Le * p.inner, name + ".xk");
                CrossV = keep((long)p.B * p.Le * p.inner, name + ".xv");
                (CrossProbs, CrossLse) = p.AttentionState(p.cross, name + ".x", p.Mode == ActivationMode.Store ? (n, t) => p.Kept(n, t) : (n, t) => p.Scratch(n, t));
                // The cross-attention may not overwrite a fused self-attention's context.
                CrossCtx = self.Fused || p.cross.Fused ? Context(p.cross.Fused, transient?.CrossCtx, ".xctx") : Ctx;
            }
        }
    }

    (Tensor? Probs, Tensor? Lse) AttentionState(AttentionSite site, string name, Func<long, string, Tensor> alloc) => site.Fused
        ? (null, alloc((long)B * c.NumHeads * site.QueryLength, name + ".lse"))
        : (alloc(UnfusedScores(site), name + ".probs"), null);

    /// <summary>Gradient buffers, shared by all blocks (the backward visits one block at a time);
    /// each lives within the backward's recording.</summary>
    sealed class Grads
    {
        public readonly Tensor EncX, DecX, EncOut, H, Ctx, Q, K, V, FfA, FfB, FfH, CrossK, CrossV;
        /// <summary>Gradients of the probabilities of the unfused attentions, if any.</summary>
        public readonly Tensor? Probs, CrossProbs;

        public Grads(T5Pass p)
        {
            var c = p.c;
            // A stage allocates only what its blocks use (a one-element tensor stands for the rest).
            var l = p.layers;
            long encRows = l.HasEncoderBlocks ? p.B * p.Le : 0, decRows = l.HasDecoderBlocks ? p.B * p.Ld : 0, maxRows = Math.Max(encRows, decRows);
            long crossRows = l.HasDecoderBlocks ? p.B * p.Le : 0;
            EncX = p.Scratch(encRows * p.d, "d_enc_x");
            DecX = p.Scratch(decRows * p.d, "d_dec_x");
            EncOut = p.Scratch(l.HasDecoderBlocks || l.EndsEncoder ? p.B * p.Le * p.d : 0, "d_encoder_out");
            H = p.Scratch(maxRows * p.d, "d_h");
            Ctx = p.Scratch(maxRows * p.inner, "d_ctx");
            Q = p.Scratch(maxRows * p.inner, "d_q");
            K = p.Scratch(maxRows * p.inner, "d_k");
            V = p.Scratch(maxRows * p.inner, "d_v");
            long selfScores = Math.Max(l.HasEncoderBlocks ? p.UnfusedScores(p.encSelf) : 0, l.HasDecoderBlocks ? p.UnfusedScores(p.decSelf) : 0);
            Probs = selfScores > 0 ? p.Scratch(selfScores, "d_probs") : null;
            CrossProbs = p.cross.Fused ? null : p.Scratch(l.HasDecoderBlocks ? p.UnfusedScores(p.cross) : 0, "d_xprobs");
            CrossK = p.Scratch(crossRows * p.inner, "d_xk");
            CrossV = p.Scratch(crossRows * p.inner, "d_xv");
            FfA = p.Scratch(maxRows * c.DFf, "d_ff_a");
            FfB = c.IsGatedAct ? p.Scratch(maxRows * c.DFf, "d_ff_b") : FfA;
            FfH = p.Scratch(maxRows * c.DFf, "d_ff_h");
        }
    }

    // ---------------------------------------------------------------- forward

    /// <summary>Embeds, runs both stacks, the LM head and the per-token log-probabilities.</summary>
    public void EmitForward()
    {
        EmitEncoder();
        EmitDecoder();
    }

    /// <summary>The final-norm output of the encoder, [B, P + Lin, d].</summary>
    public Tensor EncoderOutput => encoderOut;

    public void EmitEncoder()
    {
        if (!layers.HasEncoderBlocks) return;
        using var phase = be.Phase(Phases.EncoderForward);
        float eps = (float)c.LayerNormEpsilon;
        if (layers.EmbedsInput)
        {
            be.Embedding(w.Shared, InputIds, Prompts, Prompts is null ? null : PromptIndex, EncStream(0), B, Shape.InputLength, Shape.PromptLength, d);
            DropoutAt(EncStream(0), B * Le * d, Sites.EncoderEmbedding);
        }
        else be.Copy(Before!.EncoderStream!, EncStream(2 * encFirst));
        for (int i = encFirst; i < encEnd; i++)
            EncoderBlock(i, EncSaved(i));
        var encLast = EncStream(2 * encEnd);
        if (!layers.EndsEncoder)
        {
            be.Copy(encLast, After!.EncoderStream!);
            return;
        }
        be.RmsNorm(encLast, w.EncoderFinalNorm, encoderOut, B * Le, d, eps);
        DropoutAt(encoderOut, B * Le * d, Sites.EncoderOutput);
        if (!layers.HasDecoderBlocks) be.Copy(encoderOut, After!.EncoderOutput!);
    }

    void EmitDecoder()
    {
        if (!layers.HasDecoderBlocks) return;
        float eps = (float)c.LayerNormEpsilon;

        using (be.Phase(Phases.DecoderForward))
        {
            if (!layers.EndsEncoder) be.Copy(Before!.EncoderOutput!, encoderOut);
            if (layers.EmbedsDecoder)
            {
                be.Embedding(w.Shared, DecoderIds, null, null, DecStream(0), B, Ld, 0, d);
                DropoutAt(DecStream(0), B * Ld * d, Sites.DecoderEmbedding);
            }
            else be.Copy(Before!.DecoderStream!, DecStream(3 * decFirst));
            for (int i = decFirst; i < decEnd; i++)
                DecoderBlock(i, DecSaved(i));
            if (!layers.HasHead)
            {
                be.Copy(DecStream(3 * decEnd), After!.DecoderStream!);
                be.Copy(encoderOut, After.EncoderOutput!);
                return;
            }
            be.RmsNorm(DecStream(3 * c.NumDecoderLayers), w.DecoderFinalNorm, decFinal, B * Ld, d, eps);
            DropoutAt(decFinal, B * Ld * d, Sites.DecoderOutput);
        }
        using (be.Phase(Phases.LmHeadLoss))
        {
            LmHead();
            be.CrossEntropy(Logits, Targets, LogProbs, B * Ld, c.VocabSize);
        }
    }

    /// <summary>The <see cref="Backend.Phase"/> names this program tags its ops with.</summary>
    internal static class Phases
    {
        public const string EncoderForward = "encoder_forward";
        public const string DecoderForward = "decoder_forward";
        public const string LmHeadLoss = "lm_head_loss";
        public const string Backward = "backward";
        /// <summary>Inside <see cref="Backward"/>: block forwards re-run by <see cref="ActivationMode.Recompute"/>.</summary>
        public const string Recompute = "recompute";
    }

    BlockScratch EncSaved(int block) => encSaved.Length > 0 ? encSaved[block - encFirst] : encScratch!;
    BlockScratch DecSaved(int block) => decSaved.Length > 0 ? decSaved[block - decFirst] : decScratch!;

    // Sublayer i of the model's stack, held from the pass's first block on.
    Tensor EncStream(int i) => Stream(encStream, i - 2 * encFirst, 2);
    Tensor DecStream(int i) => Stream(decStream, i - 3 * decFirst, 3);
    Tensor Stream(Tensor[] streams, int j, int sublayers) => Mode == ActivationMode.Inference ? streams[j == 0 ? 0 : 1 + (j - 1) % sublayers] : streams[j];

    // Logits = y·Eᵀ·d^-0.5 when the embedding is tied (T5 v1.0 rescales), y·lm_headᵀ otherwise.
    float LmScale => c.TieWordEmbeddings ? 1f / MathF.Sqrt(d) : 1f;

    void LmHead() =>
        be.MatMul(decFinal, w.LmHead ?? w.Shared, Logits, MatMulSpec.Rows(B * Ld, c.VocabSize, d, transposeB: true) with { Alpha = LmScale });

    void EncoderBlock(int i, BlockScratch s)
    {
        var blk = w.Encoder[i];
        var x0 = EncStream(2 * i); var x1 = EncStream(2 * i + 1); var x2 = EncStream(2 * i + 2);
        SelfAttentionForward(blk.AttnNorm, blk.SelfAttention, x0, x1, s, B * Le, encSelf with { BiasWeight = blk.PositionBias }, Sites.Sublayer(0, i, 0));
        FeedForwardForward(blk.FfNorm, blk.FeedForward, x1, x2, s, B * Le, Sites.Sublayer(0, i, 1));
    }

    void DecoderBlock(int i, BlockScratch s)
    {
        var blk = w.Decoder[i];
        var x0 = DecStream(3 * i); var x1 = DecStream(3 * i + 1); var x2 = DecStream(3 * i + 2); var x3 = DecStream(3 * i + 3);
        SelfAttentionForward(blk.AttnNorm, blk.SelfAttention, x0, x1, s, B * Ld, decSelf with { BiasWeight = blk.PositionBias }, Sites.Sublayer(1, i, 0));
        CrossAttentionForward(blk.CrossNorm!, blk.CrossAttention!, x1, x2, s, Sites.Sublayer(1, i, 1));
        FeedForwardForward(blk.FfNorm, blk.FeedForward, x2, x3, s, B * Ld, Sites.Sublayer(1, i, 2));
    }

    static MatMulSpec Linear(int rows, int outDim, int inDim) => MatMulSpec.Rows(rows, outDim, inDim, transposeB: true);

    void SelfAttentionForward(Tensor norm, AttentionWeights aw, Tensor x, Tensor xOut, BlockScratch s, int rows, AttentionSite site, uint stream)
    {
        be.RmsNorm(x, norm, s.Norm, rows, d, (float)c.LayerNormEpsilon);
        be.MatMul(s.Norm, aw.Q, s.Q, Linear(rows, inner, d));
        be.MatMul(s.Norm, aw.K, s.K, Linear(rows, inner, d));
        be.MatMul(s.Norm, aw.V, s.V, Linear(rows, inner, d));
        AttentionCore(s.Q, s.K, s.V, s.Probs, s.Lse, s.Ctx, site, stream);
        Residual(x, xOut, s.Ctx, aw.O, rows, inner, stream);
    }

    void CrossAttentionForward(Tensor norm, AttentionWeights aw, Tensor x, Tensor xOut, BlockScratch s, uint stream)
    {
        int rows = B * Ld;
        be.RmsNorm(x, norm, s.Norm, rows, d, (float)c.LayerNormEpsilon);
        be.MatMul(s.Norm, aw.Q, s.CrossQ!, Linear(rows, inner, d));
        be.MatMul(encoderOut, aw.K, s.CrossK!, Linear(B * Le, inner, d));
        be.MatMul(encoderOut, aw.V, s.CrossV!, Linear(B * Le, inner, d));
        AttentionCore(s.CrossQ!, s.CrossK!, s.CrossV!, s.CrossProbs, s.CrossLse, s.CrossCtx!, cross, stream);
        Residual(x, xOut, s.CrossCtx!, aw.O, rows, inner, stream);
    }

    /// <summary>xOut = x + dropout(a·Wᵀ), in the product's store (<see cref="MatMulEpilogue.Residual"/>):
    /// the branch is never written to a buffer of its own, nor the stream copied first.</summary>
    void Residual(Tensor x, Tensor xOut, Tensor a, Tensor weight, int rows, int inDim, uint stream) =>
        be.MatMul(a, weight, xOut, Linear(rows, d, inDim),
                  MatMulEpilogueOperands<Tensor>.Residual(x, DropoutRate > 0 ? new DropoutMask<Tensor>(DropoutRate, DropoutSeed!, stream + Sites.Output) : null));

    /// <summary>The gradient reaching a branch's output projection: dX through its dropout mask,
    /// dropped into the gradient of the sublayer's normed input (g.H), which the sublayer's
    /// backward writes only after the projection's product has read this.</summary>
    Tensor BranchGradient(Tensor dX, int rows, uint stream)
    {
        if (DropoutRate <= 0) return dX;
        be.DropoutBackward(dX, rows * d, DropoutRate, DropoutSeed!, stream + Sites.Output, grads!.H);
        return grads.H;
    }

    AttentionSpecs Heads => new(B, c.NumHeads, c.DKv);

    FusedAttentionShape FusedShape(AttentionSite site) => new(site.Scores, c.DKv);

    /// <summary>ctx = attention of q over k, v; <paramref name="probs"/> (unfused) or
    /// <paramref name="lse"/> (fused) keeps what the backward needs besides ctx.</summary>
    void AttentionCore(Tensor q, Tensor k, Tensor v, Tensor? probs, Tensor? lse, Tensor ctx, AttentionSite site, uint stream)
    {
        if (site.Fused)
        {
            be.FusedAttention(q, k, v, ctx, lse!, site.Buckets, site.BiasWeight, site.KeyMask, FusedShape(site), DropoutRate, DropoutSeed, stream + Sites.Probs);
            return;
        }
        int lq = site.QueryLength, lk = site.KeyLength;
        // T5 does not scale scores by 1/sqrt(d_kv): the initialisation absorbs it.
        be.MatMul(q, k, probs!, Heads.QK(lq, lk, lq, lk));
        be.AttentionSoftmax(probs!, site.Buckets, site.BiasWeight, site.KeyMask, site.Scores, ProbsDropoutAt(stream));
        be.MatMul(DroppedProbs(probs!), v, ctx, Heads.PV(lq, lk, lq, lk));
    }

    // The softmax backward needs the probabilities before dropout and the value gradient those
    // after it. Rather than store both, the softmax kernels write the dropped copy from the
    // stateless mask as they pass over the probabilities anyway, forward and backward.
    ProbsDropout<Tensor>? ProbsDropoutAt(uint stream) =>
        DropoutRate > 0 ? new ProbsDropout<Tensor>(DropoutRate, DropoutSeed!, stream + Sites.Probs, droppedProbs!) : null;

    Tensor DroppedProbs(Tensor probs) => DropoutRate > 0 ? droppedProbs! : probs;

    GateActivation GateActivation => c.GateActivation;

    void FeedForwardForward(Tensor norm, FeedForwardWeights fw, Tensor x, Tensor xOut, BlockScratch s, int rows, uint stream)
    {
        be.RmsNorm(x, norm, s.Norm, rows, d, (float)c.LayerNormEpsilon);
        if (fw.Wi1 is not null)
        {
            be.MatMul(s.Norm, fw.Wi, s.FfA!, Linear(rows, c.DFf, d));
            // The gate in wi_1's store (MatMulEpilogue.Gate): FfH = dropout(act(FfA)·FfB) without a
            // pass of its own; FfB is written for the backward alone: by a storing forward, and by a
            // recomputing backward's re-run of it, not by Recompute's first forward.
            be.MatMul(s.Norm, fw.Wi1, s.FfB!, Linear(rows, c.DFf, d),
                      MatMulEpilogueOperands<Tensor>.Gated(s.FfA!, new MatMulGate<Tensor>(s.FfH, GateActivation, KeepsProduct: Mode == ActivationMode.Store || rerunning),
                                                           HiddenDropout(stream)));
        }
        else
        {
            // The relu in wi's store (MatMulEpilogue.Relu): FfH = dropout(relu(x·wi)), the
            // pre-activation never written; the backward reads FfH in its place.
            be.MatMul(s.Norm, fw.Wi, s.FfH, Linear(rows, c.DFf, d), MatMulEpilogueOperands<Tensor>.Relu(HiddenDropout(stream)));
        }
        Residual(x, xOut, s.FfH, fw.Wo, rows, c.DFf, stream);
    }

    /// <summary>Dropout mask streams: every site of every block draws an independent mask.
    /// A sublayer's base stream is Sublayer(stack, block, k); sites add a small offset.</summary>
    static class Sites
    {
        public const uint Probs = 1, Hidden = 2, Output = 3;
        public const uint EncoderEmbedding = 1, EncoderOutput = 2, DecoderEmbedding = 3, DecoderOutput = 4;
        public static uint Sublayer(int stack, int block, int k) => (uint)(16 + (stack * 4096 + block * 4 + k) * 4);
    }

    // The activations drop the feed-forward hidden tensor as they write it, and their backward
    // drops its gradient as it reads it: no pass of its own over [tokens, d_ff] either way.
    DropoutMask<Tensor>? HiddenDropout(uint stream) =>
        DropoutRate > 0 ? new DropoutMask<Tensor>(DropoutRate, DropoutSeed!, stream + Sites.Hidden) : null;

    void DropoutAt(Tensor t, long n, uint stream)
    {
        if (DropoutRate > 0) be.Dropout(t, (int)n, DropoutRate, DropoutSeed!, stream);
    }

    // ---------------------------------------------------------------- backward

    /// <summary>Gradient of the mean token loss with respect to the prompts. Must follow
    /// <see cref="EmitForward"/> in the same recording.</summary>
    public void EmitBackward()
    {
        if (grads is null || (layers.EmbedsInput && PromptGradient is null))
            throw new InvalidOperationException("this pass was built for inference or without a prompt");
        using var phase = be.Phase(Phases.Backward);
        var g = grads;
        float eps = (float)c.LayerNormEpsilon;
        if (layers.HasHead)
        {
            // In place: the logits are not needed again, and [B·Ld, vocab] is the largest activation.
            be.CrossEntropyBackward(Logits, Targets, Logits, B * Ld, c.VocabSize);
            // dy = dlogits · E (· d^-0.5 when tied): the LM head's input gradient.
            be.MatMul(Logits, w.LmHead ?? w.Shared, g.H, MatMulSpec.Rows(B * Ld, d, c.VocabSize) with { Alpha = LmScale });
            DropoutBackAt(g.H, B * Ld * d, Sites.DecoderOutput);
            be.RmsNormBackward(DecStream(3 * c.NumDecoderLayers), w.DecoderFinalNorm, g.H, g.DecX, B * Ld, d, eps, accumulate: false);
            be.Zero(g.EncOut);
        }
        else if (layers.HasDecoderBlocks) be.Copy(After!.DecoderStream!, g.DecX);
        // The encoder output's gradient travels back with the decoder's, each stage adding its
        // blocks' part: the sum of the one-device pass, in the same order.
        if (!layers.HasHead && (layers.HasDecoderBlocks || layers.EndsEncoder)) be.Copy(After!.EncoderOutput!, g.EncOut);
        for (int i = decEnd - 1; i >= decFirst; i--)
        {
            var s = DecSaved(i);
            if (Mode == ActivationMode.Recompute) Rerun(() => DecoderBlock(i, s));
            var blk = w.Decoder[i];
            FeedForwardBackward(blk.FfNorm, blk.FeedForward, DecStream(3 * i + 2), s, g.DecX, B * Ld, Sites.Sublayer(1, i, 2));
            CrossAttentionBackward(blk.CrossNorm!, blk.CrossAttention!, DecStream(3 * i + 1), s, g.DecX, Sites.Sublayer(1, i, 1));
            // The decoder's embedding gets no gradient, so the bottom self-attention can stop here.
            if (i > 0)
                SelfAttentionBackward(blk.AttnNorm, blk.SelfAttention, DecStream(3 * i), s, g.DecX, B * Ld, decSelf with { BiasWeight = blk.PositionBias }, Sites.Sublayer(1, i, 0));
        }
        if (layers.HasDecoderBlocks && !layers.EmbedsDecoder) be.Copy(g.DecX, Before!.DecoderStream!);
        if (!layers.HasEncoderBlocks)
        {
            be.Copy(g.EncOut, Before!.EncoderOutput!);
            return;
        }

        if (layers.EndsEncoder)
        {
            DropoutBackAt(g.EncOut, B * Le * d, Sites.EncoderOutput);
            be.RmsNormBackward(EncStream(2 * c.NumLayers), w.EncoderFinalNorm, g.EncOut, g.EncX, B * Le, d, eps, accumulate: false);
        }
        else be.Copy(After!.EncoderStream!, g.EncX);
        for (int i = encEnd - 1; i >= encFirst; i--)
        {
            var s = EncSaved(i);
            if (Mode == ActivationMode.Recompute) Rerun(() => EncoderBlock(i, s));
            var blk = w.Encoder[i];
            FeedForwardBackward(blk.FfNorm, blk.FeedForward, EncStream(2 * i + 1), s, g.EncX, B * Le, Sites.Sublayer(0, i, 1));
            SelfAttentionBackward(blk.AttnNorm, blk.SelfAttention, EncStream(2 * i), s, g.EncX, B * Le, encSelf with { BiasWeight = blk.PositionBias }, Sites.Sublayer(0, i, 0));
        }
        if (!layers.EmbedsInput)
        {
            be.Copy(g.EncX, Before!.EncoderStream!);
            return;
        }
        DropoutBackAt(g.EncX, B * Le * d, Sites.EncoderEmbedding);
        be.PromptGradient(g.EncX, PromptIndex, PromptGradient!, B, Shape.InputLength, Shape.PromptLength, d);
    }

    // Whether the block being emitted is a recomputing backward's re-run of its forward, which
    // keeps what the block's backward reads; Recompute's first forward keeps only the block's input.
    bool rerunning;

    void Rerun(Action block)
    {
        rerunning = true;
        try
        {
            using (be.Phase(Phases.Recompute)) block();
        }
        finally { rerunning = false; }
    }

    void DropoutBackAt(Tensor t, long n, uint stream)
    {
        if (DropoutRate > 0) be.DropoutBackward(t, (int)n, DropoutRate, DropoutSeed!, stream);
    }

    // dX is the running gradient of the residual stream; each sublayer adds its branch's part.
    void FeedForwardBackward(Tensor norm, FeedForwardWeights fw, Tensor x, BlockScratch s, Tensor dX, int rows, uint stream)
    {
        var g = grads!;
        int n = rows * c.DFf;
        be.MatMul(BranchGradient(dX, rows, stream), fw.Wo, g.FfH, MatMulSpec.Rows(rows, c.DFf, d));
        if (fw.Wi1 is not null)
        {
            be.GatedActivationBackward(s.FfA!, s.FfB!, g.FfH, g.FfA, g.FfB, n, GateActivation, HiddenDropout(stream));
            be.MatMul(g.FfA, fw.Wi, g.H, MatMulSpec.Rows(rows, d, c.DFf));
            be.MatMul(g.FfB, fw.Wi1, g.H, MatMulSpec.Rows(rows, d, c.DFf) with { Accumulate = true });
        }
        else
        {
            // The relu's output in place of its input: positive exactly where the gradient passes
            // (where the mask dropped an element, the gradient is 0 either way).
            be.ReluBackward(s.FfH, g.FfH, g.FfA, n, HiddenDropout(stream));
            be.MatMul(g.FfA, fw.Wi, g.H, MatMulSpec.Rows(rows, d, c.DFf));
        }
        be.RmsNormBackward(x, norm, g.H, dX, rows, d, (float)c.LayerNormEpsilon, accumulate: true);
    }

    /// <summary>From dctx (= dOut·Wo) back to dq, dk, dv through the softmax.</summary>
    void AttentionCoreBackward(Tensor q, Tensor k, Tensor v, Tensor? probs, Tensor? lse, Tensor ctx, Tensor? dProbs, Tensor dq, Tensor dk, Tensor dv,
                               AttentionSite site, uint stream)
    {
        var g = grads!;
        if (site.Fused)
        {
            be.FusedAttentionBackward(q, k, v, ctx, lse!, g.Ctx, dq, dk, dv, site.Buckets, site.BiasWeight, site.KeyMask, FusedShape(site),
                                      DropoutRate, DropoutSeed, stream + Sites.Probs);
            return;
        }
        int heads = c.NumHeads, lq = site.QueryLength, lk = site.KeyLength;
        // dP = dctx · vᵀ (per head), the gradient of the dropped probabilities
        be.MatMul(g.Ctx, v, dProbs!, Heads.QK(lq, lk, lq, lk));
        be.SoftmaxBackward(probs!, dProbs!, B * heads * lq, lk, ProbsDropoutAt(stream));
        // dq = dS · k
        be.MatMul(dProbs!, k, dq, Heads.PV(lq, lk, lq, lk));
        var transposed = Heads.TransposedPV(lq, lk);
        be.MatMul(dProbs!, q, dk, transposed);
        be.MatMul(DroppedProbs(probs!), g.Ctx, dv, transposed);
    }

    void SelfAttentionBackward(Tensor norm, AttentionWeights aw, Tensor x, BlockScratch s, Tensor dX, int rows, AttentionSite site, uint stream)
    {
        var g = grads!;
        be.MatMul(BranchGradient(dX, rows, stream), aw.O, g.Ctx, MatMulSpec.Rows(rows, inner, d));
        AttentionCoreBackward(s.Q, s.K, s.V, s.Probs, s.Lse, s.Ctx, g.Probs, g.Q, g.K, g.V, site, stream);
        be.MatMul(g.Q, aw.Q, g.H, MatMulSpec.Rows(rows, d, inner));
        be.MatMul(g.K, aw.K, g.H, MatMulSpec.Rows(rows, d, inner) with { Accumulate = true });
        be.MatMul(g.V, aw.V, g.H, MatMulSpec.Rows(rows, d, inner) with { Accumulate = true });
        be.RmsNormBackward(x, norm, g.H, dX, rows, d, (float)c.LayerNormEpsilon, accumulate: true);
    }

    void CrossAttentionBackward(Tensor norm, AttentionWeights aw, Tensor x, BlockScratch s, Tensor dX, uint stream)
    {
        var g = grads!;
        int rows = B * Ld;
        be.MatMul(BranchGradient(dX, rows, stream), aw.O, g.Ctx, MatMulSpec.Rows(rows, inner, d));
        AttentionCoreBackward(s.CrossQ!, s.CrossK!, s.CrossV!, s.CrossProbs, s.CrossLse, s.CrossCtx!, g.CrossProbs, g.Q, g.CrossK, g.CrossV, cross, stream);
        // Keys and values came from the encoder output: their gradient flows there.
        be.MatMul(g.CrossK, aw.K, g.EncOut, MatMulSpec.Rows(B * Le, d, inner) with { Accumulate = true });
        be.MatMul(g.CrossV, aw.V, g.EncOut, MatMulSpec.Rows(B * Le, d, inner) with { Accumulate = true });
        be.MatMul(g.Q, aw.Q, g.H, MatMulSpec.Rows(rows, d, inner));
        be.RmsNormBackward(x, norm, g.H, dX, rows, d, (float)c.LayerNormEpsilon, accumulate: true);
    }

    public void Dispose()
    {
        foreach (var t in owned) t.Dispose();
        owned.Clear();
    }
}

/// <summary>The host-visible tensors at a boundary between two stages of a model split across
/// devices, [batch x length x d_model] each: the activations the stage before computed cross
/// here in the forward (downloaded from its tensors, uploaded into the next stage's), and their
/// gradients the other way in the backward, through the same tensors (a stage has copied its
/// input into its own before its backward writes the gradient there).</summary>
/// <param name="EncoderStream">the encoder's residual stream, at a boundary inside the encoder.</param>
/// <param name="EncoderOutput">the encoder's output, at a boundary from its end on.</param>
/// <param name="DecoderStream">the decoder's residual stream, at a boundary inside the decoder.</param>
internal sealed record StageCrossing(Tensor? EncoderStream, Tensor? EncoderOutput, Tensor? DecoderStream)
{
    /// <summary>The tensors that cross, in a fixed order.</summary>
    public IEnumerable<Tensor> Tensors => new[] { EncoderStream, EncoderOutput, DecoderStream }.OfType<Tensor>();
}
