using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

internal sealed record AttentionWeights(Tensor Q, Tensor K, Tensor V, Tensor O);

/// <summary>FF weights: Wi (relu) or Wi0 and Wi1 (gated), then Wo.</summary>
internal sealed record FeedForwardWeights(Tensor Wi, Tensor? Wi1, Tensor Wo);

/// <summary>One block's weights. <paramref name="PositionBias"/> is the relative-position bias
/// table its self-attention adds: the same tensor in every block of a T5 stack (block 0's), the
/// block's own in umT5.</summary>
internal sealed record BlockWeights(Tensor AttnNorm, Tensor PositionBias, AttentionWeights SelfAttention, Tensor? CrossNorm, AttentionWeights? CrossAttention,
                                   Tensor FfNorm, FeedForwardWeights FeedForward);

/// <summary>
/// The frozen weights of a T5 checkpoint on one backend. Tensors are streamed one at a time
/// from the memory-mapped checkpoint, so no second full copy of the model is ever held in
/// managed memory (the largest transient is a slice of 4096 rows of one tensor).
/// The matrices (every Linear layer, the embedding and the LM head) are stored as
/// <see cref="Precision"/>, which halves their memory in fp16 or bf16 and quarters it in int8
/// (a byte a weight and a scale a row); layer norms and the relative-attention biases, a tiny
/// share of the model, stay fp32.
/// </summary>
internal sealed class T5Weights : IDisposable
{
    public T5Config Config { get; }
    public Backend Backend { get; }
    public WeightPrecision Precision { get; }
    public Tensor Shared { get; }
    /// <summary>lm_head.weight, or null when the embedding is tied.</summary>
    public Tensor? LmHead { get; }
    public IReadOnlyList<BlockWeights> Encoder { get; }
    public IReadOnlyList<BlockWeights> Decoder { get; }
    public Tensor EncoderFinalNorm { get; }
    public Tensor DecoderFinalNorm { get; }
    readonly List<Tensor> owned = new();

    /// <exception cref="GpuException">The backend's device cannot read weights stored as <paramref name="precision"/>.</exception>
    /// <exception cref="ModelFormatException">fp16 was asked for and a weight is beyond its range.</exception>
    public T5Weights(T5Checkpoint ckpt, Backend backend, WeightPrecision precision = WeightPrecision.Fp32)
        : this(ckpt.Config, backend, precision, name => Load(ckpt, backend, name), name => LoadTable(ckpt, backend, name, precision))
    {
    }

    /// <summary>Weights of <paramref name="config"/>'s shapes whose values are never set: for a
    /// backend that reads none, such as <see cref="TraceBackend"/> tracing what a pass emits.</summary>
    public static T5Weights Unloaded(T5Config config, TraceBackend backend, WeightPrecision precision = WeightPrecision.Fp32) =>
        Unloaded(config, backend, precision, _ => { });

    /// <summary>The bytes of device memory the weights of <paramref name="config"/> take stored
    /// as <paramref name="precision"/>, their tensors' own sizes (allocation rounding aside),
    /// counted from the very tensors the constructor makes, without loading any.</summary>
    public static long Bytes(T5Config config, WeightPrecision precision)
    {
        long bytes = 0;
        using var weights = Unloaded(config, new TraceBackend(), precision, b => bytes += b);
        return bytes;
    }

    static T5Weights Unloaded(T5Config config, TraceBackend backend, WeightPrecision precision, Action<long> count)
    {
        var shapes = T5Names.All(config).ToDictionary(t => t.Name, t => t.Shape);
        return new T5Weights(config, backend, precision,
            name =>
            {
                long length = shapes[name].Aggregate(1L, (a, b) => a * b);
                count(length * sizeof(float));
                return backend.Floats(length, name);
            },
            name =>
            {
                int rows = (int)shapes[name][0], cols = (int)shapes[name][1];
                count(precision.TableBytes(rows, cols));
                return backend.Table(rows, cols, name, precision);
            });
    }

    /// <param name="config">the model's shapes.</param>
    /// <param name="backend">where the tensors are made.</param>
    /// <param name="precision">how the tables are stored.</param>
    /// <param name="load">makes the fp32 tensor of a checkpoint name.</param>
    /// <param name="loadTable">makes the table of a matrix, in <paramref name="precision"/>.</param>
    T5Weights(T5Config config, Backend backend, WeightPrecision precision, Func<string, Tensor> load, Func<string, Tensor> loadTable)
    {
        Config = config;
        Backend = backend;
        Precision = precision;
        var c = Config;
        Tensor Load(string name) => Own(load(name));
        Tensor LoadTable(string name) => Own(loadTable(name));
        try
        {
            Shared = LoadTable(T5Names.Shared);
            LmHead = c.TieWordEmbeddings ? null : LoadTable(T5Names.LmHead);
            Encoder = LoadStack(T5Stack.Encoder, c.NumLayers);
            Decoder = LoadStack(T5Stack.Decoder, c.NumDecoderLayers);
            EncoderFinalNorm = Load(T5Names.FinalNorm(T5Stack.Encoder));
            DecoderFinalNorm = Load(T5Names.FinalNorm(T5Stack.Decoder));
        }
        catch
        {
            Dispose();
            throw;
        }

        List<BlockWeights> LoadStack(T5Stack stack, int blocks)
        {
            // One table per stack in T5, loaded once and shared; one per block only where the
            // checkpoint has them (umT5).
            var biases = new Tensor[blocks];
            var list = new List<BlockWeights>(blocks);
            for (int i = 0; i < blocks; i++)
            {
                int owner = T5Names.RelativeBiasOwner(c, i);
                biases[i] = owner == i ? Load(T5Names.RelativeBias(stack, i)) : biases[owner];
                list.Add(LoadBlock(stack, i, biases[i]));
            }
            return list;
        }

        BlockWeights LoadBlock(T5Stack stack, int i, Tensor positionBias)
        {
            bool decoder = stack == T5Stack.Decoder;
            AttentionWeights Attn(Func<string, string> name) =>
                new(LoadTable(name("q")), LoadTable(name("k")), LoadTable(name("v")), LoadTable(name("o")));
            Tensor Ff(string part) => LoadTable(T5Names.FeedForward(stack, i, part));
            var ff = Config.IsGatedAct
                ? new FeedForwardWeights(Ff("wi_0"), Ff("wi_1"), Ff("wo"))
                : new FeedForwardWeights(Ff("wi"), null, Ff("wo"));
            return new BlockWeights(
                Load(T5Names.SelfAttnNorm(stack, i)),
                positionBias,
                Attn(p => T5Names.SelfAttn(stack, i, p)),
                decoder ? Load(T5Names.CrossAttnNorm(i)) : null,
                decoder ? Attn(p => T5Names.CrossAttn(i, p)) : null,
                Load(T5Names.FeedForwardNorm(stack, i)),
                ff);
        }
    }

    Tensor Own(Tensor t)
    {
        owned.Add(t);
        return t;
    }

    static Tensor Load(T5Checkpoint ckpt, Backend backend, string name)
    {
        var data = ckpt.ReadAll(name);
        var t = backend.Floats(data.Length, name);
        try { backend.Upload(t, data); }
        catch
        {
            t.Dispose();
            throw;
        }
        return t;
    }

    /// <summary>A [rows, cols] matrix, read as the B of products or gathered from: stored as
    /// <paramref name="precision"/>, and split across bindings where it is too large for one.</summary>
    static Tensor LoadTable(T5Checkpoint ckpt, Backend backend, string name, WeightPrecision precision)
    {
        var shape = ckpt.Info(name).Shape;
        int rows = (int)shape[0], cols = (int)shape[1];
        var t = backend.Table(rows, cols, name, precision);
        try
        {
            // Slices keep the transient host buffer small even for a 250k-row mT5 vocabulary.
            const int sliceRows = 4096;
            var slice = new float[Math.Min(rows, sliceRows) * (long)cols];
            for (int r = 0; r < rows; r += sliceRows)
            {
                int n = Math.Min(sliceRows, rows - r);
                var span = slice.AsSpan(0, n * cols);
                ckpt.Read(name, span, (long)r * cols);
                try { backend.Upload(t, span, (long)r * cols); }
                catch (OverflowException e)
                {
                    throw new ModelFormatException(ckpt.Directory, $"tensor {name} cannot be stored as {precision.Name()}: {e.Message}");
                }
            }
        }
        catch
        {
            t.Dispose();
            throw;
        }
        return t;
    }

    public void Dispose()
    {
        foreach (var t in owned) t.Dispose();
        owned.Clear();
    }
}
