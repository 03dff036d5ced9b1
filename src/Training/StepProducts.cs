using VkPrompt.Model;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Training;

/// <summary>One distinct matrix product of a training step: its <see cref="MatMulSpec"/> as
/// <see cref="T5Pass"/> issues it, whether its B is a frozen weight (stored in the weights'
/// precision) or an fp32 activation, and every use of it in the step with how often each occurs.</summary>
public sealed record StepProduct(MatMulSpec Spec, bool WeightB, IReadOnlyList<StepProductUse> Uses)
{
    /// <summary>How many times one step runs this product.</summary>
    public int Count => Uses.Sum(u => u.Count);

    /// <summary>"enc q/k/v x18, xattn k/v x12": what the product is, for a table.</summary>
    public string Name => string.Join(", ", Uses.Select(u => $"{u.Name} x{u.Count}"));

    /// <summary>2·M·N·K·Batch1·Batch2 of one run.</summary>
    public long Flops => 2L * Spec.M * Spec.N * Spec.K * Spec.Batch1 * Spec.Batch2;
}

/// <summary>One place in the step where a product is made, and how many times per step.</summary>
public sealed record StepProductUse(string Name, int Count);

/// <summary>
/// The matrix products of one prompt-tuning training step (<see cref="PromptTrainer.TrainStep"/>
/// with stored activations): the forward of <see cref="T5Pass.EmitForward"/> and the prompt-only
/// backward of <see cref="T5Pass.EmitBackward"/>, written out op by op in the order T5Pass issues
/// them, with identical specs merged. <c>vkprompt bench matmul</c> times each one alone; a test
/// checks this list against the products T5Pass emits.
/// </summary>
public static class StepProducts
{
    /// <param name="dropoutRate">the step's dropout (the config's in training): with dropout a
    /// residual branch's output projection writes a buffer of its own, without it the product
    /// accumulates straight into the residual stream.</param>
    /// <param name="fusesAttention">whether an attention of these scores runs fused
    /// (<see cref="Backend.FusesAttention"/>); a fused attention makes no matrix products.</param>
    public static IReadOnlyList<StepProduct> For(T5Config c, BatchShape shape, float dropoutRate, Func<AttentionShape, bool> fusesAttention)
    {
        var list = new Builder();
        int B = shape.Batch, le = shape.EncoderLength, ld = shape.TargetLength;
        int d = c.DModel, inner = c.InnerDim, ff = c.DFf, vocab = c.VocabSize;
        int enc = B * le, dec = B * ld, ne = c.NumLayers, nd = c.NumDecoderLayers;
        int gates = c.IsGatedAct ? 2 : 1;
        bool dropout = dropoutRate > 0;
        float lmScale = c.TieWordEmbeddings ? 1f / MathF.Sqrt(d) : 1f;
        var heads = new AttentionSpecs(B, c.NumHeads, c.DKv);
        bool encFused = fusesAttention(new(B, c.NumHeads, le, le)), decFused = fusesAttention(new(B, c.NumHeads, ld, ld, Causal: true)),
             crossFused = fusesAttention(new(B, c.NumHeads, ld, le));

        static MatMulSpec Linear(int rows, int outDim, int inDim) => MatMulSpec.Rows(rows, outDim, inDim, transposeB: true);
        // Residual: with dropout the branch is its own buffer, without it the product adds into the stream.
        MatMulSpec Out(int rows, int inDim) => Linear(rows, d, inDim) with { Accumulate = !dropout };

        // ---- forward (EmitEncoder, EmitDecoder)
        list.Add("enc q/k/v", Linear(enc, inner, d), true, 3 * ne);
        if (!encFused)
        {
            list.Add("enc QK^T", heads.QK(le, le, le, le), false, ne);
            list.Add("enc PV", heads.PV(le, le, le, le), false, ne);
        }
        list.Add("enc o", Out(enc, inner), true, ne);
        list.Add("enc wi", Linear(enc, ff, d), true, gates * ne);
        list.Add("enc wo", Out(enc, ff), true, ne);

        list.Add("dec q/k/v", Linear(dec, inner, d), true, 3 * nd);
        if (!decFused)
        {
            list.Add("dec QK^T", heads.QK(ld, ld, ld, ld), false, nd);
            list.Add("dec PV", heads.PV(ld, ld, ld, ld), false, nd);
        }
        list.Add("dec o", Out(dec, inner), true, nd);
        list.Add("xattn q", Linear(dec, inner, d), true, nd);
        list.Add("xattn k/v", Linear(enc, inner, d), true, 2 * nd);
        if (!crossFused)
        {
            list.Add("xattn QK^T", heads.QK(ld, le, ld, le), false, nd);
            list.Add("xattn PV", heads.PV(ld, le, ld, le), false, nd);
        }
        list.Add("xattn o", Out(dec, inner), true, nd);
        list.Add("dec wi", Linear(dec, ff, d), true, gates * nd);
        list.Add("dec wo", Out(dec, ff), true, nd);
        list.Add("lm head", MatMulSpec.Rows(dec, vocab, d, transposeB: true) with { Alpha = lmScale }, true, 1);

        // ---- backward (EmitBackward): activation gradients dY·W, and both operands' gradients of attention
        list.Add("lm head dX", MatMulSpec.Rows(dec, d, vocab) with { Alpha = lmScale }, true, 1);
        FeedForwardBackward("dec", dec, nd);
        // Cross-attention: every decoder layer.
        list.Add("xattn o dX", MatMulSpec.Rows(dec, inner, d), true, nd);
        AttentionBackward("xattn", ld, le, crossFused, nd);
        list.Add("xattn k/v dX", MatMulSpec.Rows(enc, d, inner) with { Accumulate = true }, true, 2 * nd);
        list.Add("xattn q dX", MatMulSpec.Rows(dec, d, inner), true, nd);
        // Self-attention: not the bottom decoder layer (its input is the decoder embedding alone).
        if (nd > 1) SelfAttentionBackward("dec", dec, ld, decFused, nd - 1);
        FeedForwardBackward("enc", enc, ne);
        SelfAttentionBackward("enc", enc, le, encFused, ne);
        return list.Products;

        void FeedForwardBackward(string stack, int rows, int layers)
        {
            list.Add($"{stack} wo dX", MatMulSpec.Rows(rows, ff, d), true, layers);
            list.Add($"{stack} wi dX", MatMulSpec.Rows(rows, d, ff), true, layers);
            if (gates == 2) list.Add($"{stack} wi_1 dX", MatMulSpec.Rows(rows, d, ff) with { Accumulate = true }, true, layers);
        }

        void SelfAttentionBackward(string stack, int rows, int length, bool fused, int layers)
        {
            list.Add($"{stack} o dX", MatMulSpec.Rows(rows, inner, d), true, layers);
            AttentionBackward(stack, length, length, fused, layers);
            list.Add($"{stack} q dX", MatMulSpec.Rows(rows, d, inner), true, layers);
            list.Add($"{stack} k/v dX", MatMulSpec.Rows(rows, d, inner) with { Accumulate = true }, true, 2 * layers);
        }

        void AttentionBackward(string site, int lq, int lk, bool fused, int layers)
        {
            if (fused) return;
            list.Add($"{site} dP=dO.V^T", heads.QK(lq, lk, lq, lk), false, layers);
            list.Add($"{site} dQ=dS.K", heads.PV(lq, lk, lq, lk), false, layers);
            list.Add($"{site} dK=dS^T.Q, dV=P^T.dO", heads.TransposedPV(lq, lk), false, 2 * layers);
        }
    }

    /// <summary>Collects uses, merging those whose spec and kind of B are the same; the order is
    /// that of each product's first use in the step.</summary>
    sealed class Builder
    {
        readonly List<(MatMulSpec Spec, bool WeightB, List<StepProductUse> Uses)> products = new();

        public void Add(string name, MatMulSpec spec, bool weightB, int count)
        {
            if (count <= 0) return;
            int i = products.FindIndex(p => p.Spec == spec && p.WeightB == weightB);
            if (i < 0) products.Add((spec, weightB, [new StepProductUse(name, count)]));
            else products[i].Uses.Add(new StepProductUse(name, count));
        }

        public IReadOnlyList<StepProduct> Products => products.Select(p => new StepProduct(p.Spec, p.WeightB, p.Uses)).ToList();
    }
}
