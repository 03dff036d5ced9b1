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
/// A stage of a model split across devices holds only its <see cref="Layers"/> and what those
/// need (the embedding where the input or the decoder's input is embedded or the head is tied,
/// the head, the final norms, the bias tables its blocks read); asking it for anything else is a
/// bug, said at once by the accessors.
/// </summary>
internal sealed class T5Weights : IDisposable
{
    public T5Config Config { get; }
    public Backend Backend { get; }
    public WeightPrecision Precision { get; }
    /// <summary>The layers held: <see cref="LayerRange.All"/> but on a stage of a pipeline.</summary>
    public LayerRange Layers { get; }
    public Tensor Shared => shared ?? throw NotHeld("the shared embedding");
    /// <summary>lm_head.weight, or null when the embedding is tied.</summary>
    public Tensor? LmHead => Layers.HasHead ? lmHead : throw NotHeld("the LM head");
    /// <summary>The stacks' blocks by their number in the model (a stage holds only its own).</summary>
    public IReadOnlyList<BlockWeights> Encoder { get; }
    public IReadOnlyList<BlockWeights> Decoder { get; }
    public Tensor EncoderFinalNorm => encoderFinalNorm ?? throw NotHeld("the encoder's final norm");
    public Tensor DecoderFinalNorm => decoderFinalNorm ?? throw NotHeld("the decoder's final norm");
    readonly Tensor? shared, lmHead, encoderFinalNorm, decoderFinalNorm;
    readonly List<Tensor> owned = new();

    InvalidOperationException NotHeld(string what) => new($"{what} is not on this stage of the pipeline ({Layers})");

    /// <exception cref="GpuException">The backend's device cannot read weights stored as <paramref name="precision"/>.</exception>
    /// <exception cref="ModelFormatException">fp16 was asked for and a weight is beyond its range.</exception>
    /// <param name="ckpt">the checkpoint the tensors are read from.</param>
    /// <param name="backend">where the tensors are made.</param>
    /// <param name="precision">how the matrices are stored.</param>
    /// <param name="layers">the layers to hold; null: all (the model on one device).</param>
    public T5Weights(T5Checkpoint ckpt, Backend backend, WeightPrecision precision = WeightPrecision.Fp32, LayerRange? layers = null)
        : this(ckpt.Config, backend, precision, layers, name => Load(ckpt, backend, name), name => LoadTable(ckpt, backend, name, precision))
    {
    }

    /// <summary>Weights of <paramref name="config"/>'s shapes whose values are never set: for a
    /// backend that reads none, such as <see cref="TraceBackend"/> tracing what a pass emits.</summary>
    public static T5Weights Unloaded(T5Config config, TraceBackend backend, WeightPrecision precision = WeightPrecision.Fp32, LayerRange? layers = null) =>
        Unloaded(config, backend, precision, layers, _ => { });

    /// <summary>The bytes of device memory the weights of <paramref name="config"/> take stored
    /// as <paramref name="precision"/>, their tensors' own sizes (allocation rounding aside),
    /// counted from the very tensors the constructor makes, without loading any.</summary>
    /// <param name="config">the model.</param>
    /// <param name="precision">how the tables are stored.</param>
    /// <param name="layers">the layers of a stage; null: all.</param>
    public static long Bytes(T5Config config, WeightPrecision precision, LayerRange? layers = null)
    {
        long bytes = 0;
        using var weights = Unloaded(config, new TraceBackend(), precision, layers, b => bytes += b);
        return bytes;
    }

    static T5Weights Unloaded(T5Config config, TraceBackend backend, WeightPrecision precision, LayerRange? layers, Action<long> count)
    {
        var shapes = T5Names.All(config).ToDictionary(t => t.Name, t => t.Shape);
        return new T5Weights(config, backend, precision, layers,
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
    /// <param name="layers">the layers to hold; null: all.</param>
    /// <param name="load">makes the fp32 tensor of a checkpoint name.</param>
    /// <param name="loadTable">makes the table of a matrix, in <paramref name="precision"/>.</param>
    T5Weights(T5Config config, Backend backend, WeightPrecision precision, LayerRange? layers, Func<string, Tensor> load, Func<string, Tensor> loadTable)
    {
        Config = config;
        Backend = backend;
        Precision = precision;
        var c = Config;
        var l = Layers = layers ?? LayerRange.All(c);
        Tensor Load(string name) => Own(load(name));
        Tensor LoadTable(string name) => Own(loadTable(name));
        try
        {
            // Loaded in the one-device order (the allocation sequence the memory plan counts).
            shared = l.EmbedsInput || l.EmbedsDecoder || (l.HasHead && c.TieWordEmbeddings) ? LoadTable(T5Names.Shared) : null;
            lmHead = l.HasHead && !c.TieWordEmbeddings ? LoadTable(T5Names.LmHead) : null;
            Encoder = LoadStack(T5Stack.Encoder, c.NumLayers, l.EncoderBlocks);
            Decoder = LoadStack(T5Stack.Decoder, c.NumDecoderLayers, l.DecoderBlocks);
            encoderFinalNorm = l.EndsEncoder ? Load(T5Names.FinalNorm(T5Stack.Encoder)) : null;
            decoderFinalNorm = l.HasHead ? Load(T5Names.FinalNorm(T5Stack.Decoder)) : null;
        }
        catch
        {
            Dispose();
            throw;
        }

        HeldBlocks LoadStack(T5Stack stack, int blocks, (int First, int End) held)
        {
            // One table per stack in T5, loaded once and shared (a stage without block 0 loads it
            // too); one per block only where the checkpoint has them (umT5).
            var biases = new Tensor?[blocks];
            var list = new BlockWeights?[blocks];
            for (int i = held.First; i < held.End; i++)
            {
                int owner = T5Names.RelativeBiasOwner(c, i);
                var bias = biases[owner] ??= Load(T5Names.RelativeBias(stack, owner));
                list[i] = LoadBlock(stack, i, bias);
            }
            return new HeldBlocks(list, stack, l);
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

    /// <summary>A stack's blocks by their number in the model; a stage holds only its range, and
    /// asking it for another block is a bug, said at once. Count is the model's; enumerating
    /// gives the blocks held.</summary>
    sealed class HeldBlocks(BlockWeights?[] blocks, T5Stack stack, LayerRange layers) : IReadOnlyList<BlockWeights>
    {
        public BlockWeights this[int index] => blocks[index] ?? throw new InvalidOperationException($"{stack} block {index} is not on this stage of the pipeline ({layers})");
        public int Count => blocks.Length;
        public IEnumerator<BlockWeights> GetEnumerator() => blocks.OfType<BlockWeights>().GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
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
