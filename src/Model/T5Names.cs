namespace VkPrompt.Model;

internal enum T5Stack { Encoder, Decoder }

/// <summary>Hugging Face tensor names of a T5ForConditionalGeneration checkpoint. Attention
/// projections are "q", "k", "v", "o"; feed-forward ones "wi" (relu) or "wi_0", "wi_1"
/// (gated), and "wo".</summary>
internal static class T5Names
{
    public const string Shared = "shared.weight";
    public const string LmHead = "lm_head.weight";

    public static string SelfAttn(T5Stack stack, int block, string proj) => $"{Block(stack, block)}.layer.0.SelfAttention.{proj}.weight";

    /// <summary>The relative-position bias table of a block's self-attention. T5 has one, block
    /// 0's, which every block of the stack reuses; umT5 (<see cref="T5Config.PerLayerPositionBias"/>)
    /// one in every block.</summary>
    public static string RelativeBias(T5Stack stack, int block) => $"{Block(stack, block)}.layer.0.SelfAttention.relative_attention_bias.weight";

    /// <summary>The block whose bias table block <paramref name="block"/>'s self-attention adds.</summary>
    public static int RelativeBiasOwner(T5Config cfg, int block) => cfg.PerLayerPositionBias ? block : 0;

    public static string SelfAttnNorm(T5Stack stack, int block) => $"{Block(stack, block)}.layer.0.layer_norm.weight";

    public static string CrossAttn(int block, string proj) => $"{Block(T5Stack.Decoder, block)}.layer.1.EncDecAttention.{proj}.weight";

    public static string CrossAttnNorm(int block) => $"{Block(T5Stack.Decoder, block)}.layer.1.layer_norm.weight";

    public static string FeedForward(T5Stack stack, int block, string proj) => $"{Block(stack, block)}.layer.{FeedForwardLayer(stack)}.DenseReluDense.{proj}.weight";

    public static string FeedForwardNorm(T5Stack stack, int block) => $"{Block(stack, block)}.layer.{FeedForwardLayer(stack)}.layer_norm.weight";

    public static string FinalNorm(T5Stack stack) => $"{StackName(stack)}.final_layer_norm.weight";

    /// <summary>Every tensor the forward pass of <paramref name="cfg"/> reads, with its shape.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> All(T5Config cfg)
    {
        long v = cfg.VocabSize, d = cfg.DModel, inner = cfg.InnerDim, ff = cfg.DFf;
        var all = new List<(string, long[])> { (Shared, [v, d]) };
        foreach (var stack in (ReadOnlySpan<T5Stack>)[T5Stack.Encoder, T5Stack.Decoder])
        {
            int blocks = stack == T5Stack.Encoder ? cfg.NumLayers : cfg.NumDecoderLayers;
            for (int b = 0; b < blocks; b++)
            {
                foreach (var p in (ReadOnlySpan<string>)["q", "k", "v"]) all.Add((SelfAttn(stack, b, p), [inner, d]));
                all.Add((SelfAttn(stack, b, "o"), [d, inner]));
                if (RelativeBiasOwner(cfg, b) == b) all.Add((RelativeBias(stack, b), [cfg.RelativeAttentionNumBuckets, cfg.NumHeads]));
                all.Add((SelfAttnNorm(stack, b), [d]));
                if (stack == T5Stack.Decoder)
                {
                    foreach (var p in (ReadOnlySpan<string>)["q", "k", "v"]) all.Add((CrossAttn(b, p), [inner, d]));
                    all.Add((CrossAttn(b, "o"), [d, inner]));
                    all.Add((CrossAttnNorm(b), [d]));
                }
                if (cfg.IsGatedAct)
                {
                    all.Add((FeedForward(stack, b, "wi_0"), [ff, d]));
                    all.Add((FeedForward(stack, b, "wi_1"), [ff, d]));
                }
                else all.Add((FeedForward(stack, b, "wi"), [ff, d]));
                all.Add((FeedForward(stack, b, "wo"), [d, ff]));
                all.Add((FeedForwardNorm(stack, b), [d]));
            }
            all.Add((FinalNorm(stack), [d]));
        }
        if (!cfg.TieWordEmbeddings) all.Add((LmHead, [v, d]));
        return all;
    }

    static string StackName(T5Stack stack) => stack == T5Stack.Encoder ? "encoder" : "decoder";

    static string Block(T5Stack stack, int block) => $"{StackName(stack)}.block.{block}";

    // The decoder's extra cross-attention sublayer pushes its feed-forward from layer.1 to layer.2.
    static int FeedForwardLayer(T5Stack stack) => stack == T5Stack.Encoder ? 1 : 2;
}
