using VkPrompt.Model.Backends;

namespace VkPrompt.Model;

public sealed record AttentionWeights(Tensor Q, Tensor K, Tensor V, Tensor O);

/// <summary>FF weights: Wi (relu) or Wi0 and Wi1 (gated-gelu), then Wo.</summary>
public sealed record FeedForwardWeights(Tensor Wi, Tensor? Wi1, Tensor Wo);

public sealed record BlockWeights(Tensor AttnNorm, AttentionWeights SelfAttention, Tensor? CrossNorm, AttentionWeights? CrossAttention, Tensor FfNorm, FeedForwardWeights FeedForward);

/// <summary>
/// The frozen weights of a T5 checkpoint on one backend. Tensors are streamed one at a time
/// from the memory-mapped checkpoint, so no second full copy of the model is ever held in
/// managed memory (the largest transient is one tensor, or a slice of the embedding).
/// </summary>
public sealed class T5Weights : IDisposable
{
    public T5Config Config { get; }
    public Backend Backend { get; }
    public Tensor Shared { get; }
    /// <summary>lm_head.weight, or null when the embedding is tied.</summary>
    public Tensor? LmHead { get; }
    public Tensor EncoderBias { get; }
    public Tensor DecoderBias { get; }
    public IReadOnlyList<BlockWeights> Encoder { get; }
    public IReadOnlyList<BlockWeights> Decoder { get; }
    public Tensor EncoderFinalNorm { get; }
    public Tensor DecoderFinalNorm { get; }
    readonly List<Tensor> owned = new();

    public T5Weights(T5Checkpoint ckpt, Backend backend)
    {
        Config = ckpt.Config;
        Backend = backend;
        var c = Config;
        try
        {
            Shared = LoadTable(ckpt, T5Names.Shared, c.VocabSize, c.DModel);
            LmHead = c.TieWordEmbeddings ? null : LoadTable(ckpt, T5Names.LmHead, c.VocabSize, c.DModel);
            EncoderBias = Load(ckpt, T5Names.RelativeBias(T5Stack.Encoder));
            DecoderBias = Load(ckpt, T5Names.RelativeBias(T5Stack.Decoder));
            Encoder = Enumerable.Range(0, c.NumLayers).Select(i => LoadBlock(ckpt, T5Stack.Encoder, i)).ToList();
            Decoder = Enumerable.Range(0, c.NumDecoderLayers).Select(i => LoadBlock(ckpt, T5Stack.Decoder, i)).ToList();
            EncoderFinalNorm = Load(ckpt, T5Names.FinalNorm(T5Stack.Encoder));
            DecoderFinalNorm = Load(ckpt, T5Names.FinalNorm(T5Stack.Decoder));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    BlockWeights LoadBlock(T5Checkpoint ckpt, T5Stack stack, int i)
    {
        bool decoder = stack == T5Stack.Decoder;
        AttentionWeights Attn(Func<string, string> name) => new(Load(ckpt, name("q")), Load(ckpt, name("k")), Load(ckpt, name("v")), Load(ckpt, name("o")));
        var ff = Config.IsGatedAct
            ? new FeedForwardWeights(Load(ckpt, T5Names.FeedForward(stack, i, "wi_0")), Load(ckpt, T5Names.FeedForward(stack, i, "wi_1")), Load(ckpt, T5Names.FeedForward(stack, i, "wo")))
            : new FeedForwardWeights(Load(ckpt, T5Names.FeedForward(stack, i, "wi")), null, Load(ckpt, T5Names.FeedForward(stack, i, "wo")));
        return new BlockWeights(
            Load(ckpt, T5Names.SelfAttnNorm(stack, i)),
            Attn(p => T5Names.SelfAttn(stack, i, p)),
            decoder ? Load(ckpt, T5Names.CrossAttnNorm(i)) : null,
            decoder ? Attn(p => T5Names.CrossAttn(i, p)) : null,
            Load(ckpt, T5Names.FeedForwardNorm(stack, i)),
            ff);
    }

    Tensor Load(T5Checkpoint ckpt, string name)
    {
        var data = ckpt.ReadAll(name);
        var t = Backend.Floats(data.Length, name);
        owned.Add(t);
        Backend.Upload(t, data);
        return t;
    }

    Tensor LoadTable(T5Checkpoint ckpt, string name, int rows, int cols)
    {
        var t = Backend.Table(rows, cols, name);
        owned.Add(t);
        // Slices keep the transient host buffer small even for a 250k-row mT5 vocabulary.
        const int sliceRows = 4096;
        var slice = new float[Math.Min(rows, sliceRows) * (long)cols];
        for (int r = 0; r < rows; r += sliceRows)
        {
            int n = Math.Min(sliceRows, rows - r);
            var span = slice.AsSpan(0, n * cols);
            ckpt.Read(name, span, (long)r * cols);
            Backend.Upload(t, span, (long)r * cols);
        }
        return t;
    }

    public void Dispose()
    {
        foreach (var t in owned) t.Dispose();
        owned.Clear();
    }
}
