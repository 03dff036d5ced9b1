namespace VkPrompt.Model;

/// <summary>
/// The layers one stage of a model split across devices holds and runs (<c>--pipeline</c>): the
/// consecutive layers [<see cref="First"/>, <see cref="End"/>) of the model's layers in the
/// order the data flows through them, the encoder blocks 0..N-1 and then the decoder blocks as
/// N..N+M-1. <see cref="All"/> is the whole model, the one-device case. Which embeddings, final
/// norms and heads a stage needs follows from its range, so the weights
/// (<see cref="T5Weights"/>) and the program (<see cref="T5Pass"/>) of a stage both read it here.
/// </summary>
internal readonly record struct LayerRange(int First, int End, int EncoderLayers, int DecoderLayers)
{
    /// <summary>Every layer of <paramref name="config"/>'s model.</summary>
    public static LayerRange All(T5Config config) => new(0, config.NumLayers + config.NumDecoderLayers, config.NumLayers, config.NumDecoderLayers);

    /// <summary>Layers <paramref name="first"/>..<paramref name="end"/>-1 of <paramref name="config"/>'s model.</summary>
    public static LayerRange Of(T5Config config, int first, int end)
    {
        var all = All(config);
        if (first < 0 || end <= first || end > all.End)
            throw new ArgumentOutOfRangeException(nameof(end), $"layers {first}..{end - 1} are not a non-empty range of the model's {all.End}");
        return all with { First = first, End = end };
    }

    /// <summary>The encoder blocks held, [first, end).</summary>
    public (int First, int End) EncoderBlocks => (Math.Min(First, EncoderLayers), Math.Min(End, EncoderLayers));
    /// <summary>The decoder blocks held, [first, end).</summary>
    public (int First, int End) DecoderBlocks => (Math.Max(First - EncoderLayers, 0), Math.Max(End - EncoderLayers, 0));

    public bool IsAll => First == 0 && End == EncoderLayers + DecoderLayers;
    public bool HasEncoderBlocks => First < EncoderLayers;
    public bool HasDecoderBlocks => End > EncoderLayers;
    /// <summary>Embeds the input and the prompts: the first stage.</summary>
    public bool EmbedsInput => First == 0;
    /// <summary>Holds the encoder's last block, so applies its final norm and makes the encoder output.</summary>
    public bool EndsEncoder => First < EncoderLayers && End >= EncoderLayers;
    /// <summary>Holds decoder block 0, so embeds the decoder's input.</summary>
    public bool EmbedsDecoder => First <= EncoderLayers && End > EncoderLayers;
    /// <summary>Holds the decoder's last block, so applies its final norm, the LM head and the loss: the last stage.</summary>
    public bool HasHead => End == EncoderLayers + DecoderLayers;

    public override string ToString() => $"layers {First}..{End - 1}";
}
