using System.Text.Json;
using System.Text.Json.Serialization;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model;

/// <summary>The feed-forward block of a T5 layer (config.json's feed_forward_proj).</summary>
public enum T5FeedForward
{
    /// <summary>"relu": <c>wo(relu(wi x))</c> (T5 v1.0).</summary>
    Relu,
    /// <summary>"gated-gelu": <c>wo(gelu_tanh(wi_0 x) * wi_1 x)</c> (T5 v1.1, LM-adapted, Flan-T5, umT5).</summary>
    GatedGelu,
    /// <summary>"gated-silu": <c>wo(silu(wi_0 x) * wi_1 x)</c>, silu(x) = x·sigmoid(x) (UL2, Flan-UL2).</summary>
    GatedSilu,
}

/// <summary>The fields of a Hugging Face T5 config.json that VkPrompt uses. Defaults are those of
/// transformers' T5Config, so a config.json that omits a field means what it means to HF.</summary>
public sealed record T5Config
{
    readonly int? numDecoderLayers;

    /// <summary>Rows of the embedding table and LM head (vocab_size); may exceed the tokenizer's vocabulary, as T5's 32128 does its 32100.</summary>
    public int VocabSize { get; init; } = 32128;
    /// <summary>The model width (d_model), also the length of one prompt row.</summary>
    public int DModel { get; init; } = 512;
    /// <summary>Width of one attention head (d_kv).</summary>
    public int DKv { get; init; } = 64;
    /// <summary>Attention heads per layer (num_heads).</summary>
    public int NumHeads { get; init; } = 8;
    /// <summary>Inner width of the feed-forward block (d_ff).</summary>
    public int DFf { get; init; } = 2048;
    /// <summary>Encoder layers (num_layers), and decoder layers unless <see cref="NumDecoderLayers"/> says otherwise.</summary>
    public int NumLayers { get; init; } = 6;

    /// <summary>Defaults to <see cref="NumLayers"/>, as in HF.</summary>
    public int NumDecoderLayers { get => numDecoderLayers ?? NumLayers; init => numDecoderLayers = value; }

    /// <summary>Buckets of the relative position bias (relative_attention_num_buckets).</summary>
    public int RelativeAttentionNumBuckets { get; init; } = 32;
    /// <summary>The distance from which all positions share the last bucket (relative_attention_max_distance).</summary>
    public int RelativeAttentionMaxDistance { get; init; } = 128;
    /// <summary>The epsilon of T5's RMS norm (layer_norm_epsilon).</summary>
    public double LayerNormEpsilon { get; init; } = 1e-6;
    /// <summary>Which feed-forward block the layers have (feed_forward_proj).</summary>
    public T5FeedForward FeedForwardProj { get; init; } = T5FeedForward.Relu;
    /// <summary>Whether the LM head is the embedding table, with the decoder output scaled by d_model^-0.5 first (tie_word_embeddings).</summary>
    public bool TieWordEmbeddings { get; init; } = true;
    /// <summary>The dropout rate training applies (dropout_rate); scoring never drops.</summary>
    public double DropoutRate { get; init; } = 0.1;
    /// <summary>The token the decoder input starts with (decoder_start_token_id; pad in T5).</summary>
    public int DecoderStartTokenId { get; init; }
    /// <summary>The padding token (pad_token_id).</summary>
    public int PadTokenId { get; init; }
    /// <summary>The end-of-sequence token every encoded text ends with (eos_token_id).</summary>
    public int EosTokenId { get; init; } = 1;
    /// <summary>The tokenizer the model was trained with (tokenizer_class), when config.json names one:
    /// "ByT5Tokenizer" selects ByT5's bytes (see <see cref="Tokenization.T5Tokenizer.Load"/>).</summary>
    public string? TokenizerClass { get; init; }

    /// <summary>Whether every self-attention layer, encoder and decoder, has a relative-position
    /// bias table of its own (umT5, model_type "umt5"), rather than all layers of a stack sharing
    /// block 0's (T5).</summary>
    public bool PerLayerPositionBias { get; init; }

    /// <summary>Whether config.json named feed_forward_proj. Where it did not, the checkpoint's
    /// tensors decide between gated and relu (<see cref="T5Checkpoint.Open"/>): some umT5
    /// configs omit the key. Not part of <see cref="Equals(T5Config)"/>.</summary>
    internal bool FeedForwardProjGiven { get; init; } = true;

    /// <summary>Whether the feed-forward block is gated (two input projections, T5 v1.1, UL2).</summary>
    public bool IsGatedAct => FeedForwardProj != T5FeedForward.Relu;

    /// <summary>The activation of the gated feed-forward (gelu_tanh unless gated-silu).</summary>
    internal GateActivation GateActivation => FeedForwardProj == T5FeedForward.GatedSilu ? GateActivation.Silu : GateActivation.GeluTanh;

    /// <summary>The feed_forward_proj value that selects <see cref="FeedForwardProj"/>.</summary>
    internal string FeedForwardProjName => FeedForwardProj switch
    {
        T5FeedForward.GatedGelu => "gated-gelu",
        T5FeedForward.GatedSilu => "gated-silu",
        _ => "relu",
    };

    /// <summary>Equal when both describe the same config.json, whether
    /// <see cref="NumDecoderLayers"/> was given or defaulted.</summary>
    public bool Equals(T5Config? other) => other is not null && ToJson() == other.ToJson();

    /// <summary>Hashes what <see cref="Equals(T5Config)"/> compares.</summary>
    public override int GetHashCode() => ToJson().GetHashCode(StringComparison.Ordinal);

    /// <summary>Width of the concatenated attention heads, <c>NumHeads * DKv</c>; equals
    /// <see cref="DModel"/> in the released models but not in general.</summary>
    public int InnerDim => NumHeads * DKv;

    /// <summary>The names <see cref="Named"/> knows, in the order help texts list them.</summary>
    public static IReadOnlyList<string> ShapeNames { get; } = ["t5-small", "t5-base", "t5-large", "t5-xl", "t5-xxl", "ul2", "umt5-base", "byt5-small"];

    /// <summary>Shapes of the released checkpoints VkPrompt targets: "t5-small" is the original T5
    /// (v1.0); "t5-base" to "t5-xxl" (11B) are the T5 v1.1 LM-adapted models; "ul2" is google/ul2's
    /// (gated-silu, d_kv 256), "umt5-base" google/umt5-base's (a position bias per layer, a
    /// 256384-row vocabulary) and "byt5-small" google/byt5-small's (bytes, 12 encoder and 4
    /// decoder layers), from their published config.json.</summary>
    public static T5Config Named(string name) => name switch
    {
        "t5-small" => new T5Config(),
        "t5-base" => V11LmAdapted(dModel: 768, dFf: 2048, heads: 12, layers: 12),
        "t5-large" => V11LmAdapted(dModel: 1024, dFf: 2816, heads: 16, layers: 24),
        "t5-xl" => V11LmAdapted(dModel: 2048, dFf: 5120, heads: 32, layers: 24),
        "t5-xxl" => V11LmAdapted(dModel: 4096, dFf: 10240, heads: 64, layers: 24),
        "byt5-small" => V11LmAdapted(dModel: 1472, dFf: 3584, heads: 6, layers: 12) with
        {
            NumDecoderLayers = 4, VocabSize = 384, TokenizerClass = ByteTokenizerClass,
        },
        "ul2" => V11LmAdapted(dModel: 4096, dFf: 16384, heads: 16, layers: 32) with { DKv = 256, FeedForwardProj = T5FeedForward.GatedSilu },
        "umt5-base" => V11LmAdapted(dModel: 768, dFf: 2048, heads: 12, layers: 12) with { VocabSize = 256384, PerLayerPositionBias = true },
        _ => throw new ArgumentException($"unknown model shape '{name}'; known: {string.Join(", ", ShapeNames)}", nameof(name)),
    };

    /// <summary>tokenizer_class of ByT5's byte tokenizer.</summary>
    internal const string ByteTokenizerClass = "ByT5Tokenizer";

    static T5Config V11LmAdapted(int dModel, int dFf, int heads, int layers) => new()
    {
        DModel = dModel,
        DFf = dFf,
        NumHeads = heads,
        NumLayers = layers,
        FeedForwardProj = T5FeedForward.GatedGelu,
        TieWordEmbeddings = false,
    };

    /// <summary>Reads a Hugging Face config.json; throws <see cref="ModelFormatException"/> when it
    /// is missing, not JSON, or describes a model VkPrompt cannot run.</summary>
    public static T5Config Load(string configJsonPath)
    {
        var path = Path.GetFullPath(configJsonPath);
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        T5ConfigJson? json;
        try { json = JsonSerializer.Deserialize(File.ReadAllBytes(path), ModelJsonContext.Default.T5ConfigJson); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not a valid T5 config: {JsonMessages.Describe(e)}"); }
        if (json is null) throw new ModelFormatException(path, "is JSON null, not a config object");
        if (json.ModelType is not (null or "t5" or "mt5" or "umt5"))
            throw new ModelFormatException(path, $"model_type is \"{json.ModelType}\"; VkPrompt runs T5 (\"t5\", \"mt5\", \"umt5\") models only");

        bool umt5 = json.ModelType == "umt5";
        var defaults = umt5 ? UmT5Defaults : new T5Config();
        var config = new T5Config
        {
            VocabSize = json.VocabSize ?? defaults.VocabSize,
            DModel = json.DModel ?? defaults.DModel,
            DKv = json.DKv ?? defaults.DKv,
            NumHeads = json.NumHeads ?? defaults.NumHeads,
            DFf = json.DFf ?? defaults.DFf,
            NumLayers = json.NumLayers ?? defaults.NumLayers,
            NumDecoderLayers = json.NumDecoderLayers ?? json.NumLayers ?? defaults.NumLayers,
            RelativeAttentionNumBuckets = json.RelativeAttentionNumBuckets ?? defaults.RelativeAttentionNumBuckets,
            RelativeAttentionMaxDistance = json.RelativeAttentionMaxDistance ?? defaults.RelativeAttentionMaxDistance,
            LayerNormEpsilon = json.LayerNormEpsilon ?? defaults.LayerNormEpsilon,
            FeedForwardProj = json.FeedForwardProj is { } proj ? ParseFeedForward(path, proj) : defaults.FeedForwardProj,
            FeedForwardProjGiven = json.FeedForwardProj is not null,
            PerLayerPositionBias = umt5,
            TieWordEmbeddings = json.TieWordEmbeddings ?? defaults.TieWordEmbeddings,
            DropoutRate = json.DropoutRate ?? defaults.DropoutRate,
            DecoderStartTokenId = json.DecoderStartTokenId ?? defaults.DecoderStartTokenId,
            PadTokenId = json.PadTokenId ?? defaults.PadTokenId,
            EosTokenId = json.EosTokenId ?? defaults.EosTokenId,
            TokenizerClass = json.TokenizerClass,
        };
        if (config.Problem() is { } problem) throw new ModelFormatException(path, problem);
        return config;
    }

    /// <summary>transformers' UMT5Config defaults, which differ from T5Config's; absent keys of a
    /// "umt5" config.json take these.</summary>
    static readonly T5Config UmT5Defaults = new()
    {
        VocabSize = 250112,
        DFf = 1024,
        NumLayers = 8,
        NumHeads = 6,
        FeedForwardProj = T5FeedForward.GatedGelu,
        PerLayerPositionBias = true,
    };

    /// <summary>HF splits feed_forward_proj into an optional "gated-" and an activation name, and
    /// maps "gated-gelu" to gelu_new (the tanh approximation); gelu_new and gelu_pytorch_tanh are
    /// that same function, so those spellings mean gated-gelu too. Every other activation HF
    /// would accept is one the numerical contract does not define.</summary>
    static T5FeedForward ParseFeedForward(string path, string value) => value switch
    {
        "relu" => T5FeedForward.Relu,
        "gated-gelu" or "gated-gelu_new" or "gated-gelu_pytorch_tanh" => T5FeedForward.GatedGelu,
        "gated-silu" => T5FeedForward.GatedSilu,
        _ => throw new ModelFormatException(path, $"feed_forward_proj \"{value}\" is not supported; VkPrompt runs \"relu\" (T5 v1.0), \"gated-gelu\" (T5 v1.1, Flan-T5, umT5) and \"gated-silu\" (UL2)"),
    };

    /// <summary>The most layers a stack may have (<see cref="Problem"/>).</summary>
    internal const int MaxLayers = 1024;

    /// <summary>The first field that cannot describe a T5 model, or null.</summary>
    internal string? Problem()
    {
        (string Name, long Value)[] positive =
        [
            ("vocab_size", VocabSize), ("d_model", DModel), ("d_kv", DKv), ("num_heads", NumHeads), ("d_ff", DFf),
            ("num_layers", NumLayers), ("num_decoder_layers", NumDecoderLayers),
            ("relative_attention_num_buckets", RelativeAttentionNumBuckets), ("relative_attention_max_distance", RelativeAttentionMaxDistance),
        ];
        foreach (var (name, value) in positive)
            if (value <= 0) return $"{name} is {value}; it must be positive";
        // T5 XXL has 24 layers a stack and UL2 32; a count far past any is a damaged file, and
        // taken at its word it lists billions of tensors (T5Names.All) before one is found missing.
        foreach (var (name, value) in new[] { ("num_layers", NumLayers), ("num_decoder_layers", NumDecoderLayers) })
            if (value > MaxLayers) return $"{name} is {value}; VkPrompt reads models of at most {MaxLayers} layers a stack";
        // RelativePosition.Bucket gives |relative| < maxExact its own bucket and spreads the rest
        // logarithmically over log(relative / maxExact) / log(max_distance / maxExact), where
        // maxExact is num_buckets / 4 in the encoder (bidirectional: half the buckets each way) and
        // num_buckets / 2 in the decoder. maxExact 0 divides by zero, and max_distance <= maxExact
        // makes that logarithm zero or negative, so buckets come out NaN or negative and index
        // outside the bias table.
        if (RelativeAttentionNumBuckets < 4)
            return $"relative_attention_num_buckets is {RelativeAttentionNumBuckets}; it must be at least 4 (a quarter of the buckets, num_buckets / 4, are exact positions each way in the encoder)";
        if (RelativeAttentionMaxDistance <= RelativeAttentionNumBuckets / 2)
            return $"relative_attention_max_distance {RelativeAttentionMaxDistance} with relative_attention_num_buckets {RelativeAttentionNumBuckets}: " +
                $"max_distance must be greater than num_buckets / 2 = {RelativeAttentionNumBuckets / 2} (the decoder's exact positions) or buckets come out negative";
        if (!(LayerNormEpsilon > 0)) return $"layer_norm_epsilon is {LayerNormEpsilon}; it must be positive";
        if (!(DropoutRate >= 0 && DropoutRate < 1)) return $"dropout_rate is {DropoutRate}; it must be in [0, 1)";
        foreach (var (name, id) in new[] { ("decoder_start_token_id", DecoderStartTokenId), ("pad_token_id", PadTokenId), ("eos_token_id", EosTokenId) })
            if (id < 0 || id >= VocabSize) return $"{name} {id} is outside the vocabulary of {VocabSize}";
        return null;
    }

    /// <summary>A config.json that transformers loads as this model (derived fields such as
    /// is_gated_act and dense_act_fn included, for readers that look at them).</summary>
    public string ToJson() => JsonSerializer.Serialize(new T5ConfigJson
    {
        Architectures = [PerLayerPositionBias ? "UMT5ForConditionalGeneration" : "T5ForConditionalGeneration"],
        ModelType = PerLayerPositionBias ? "umt5" : "t5",
        VocabSize = VocabSize,
        DModel = DModel,
        DKv = DKv,
        NumHeads = NumHeads,
        DFf = DFf,
        NumLayers = NumLayers,
        NumDecoderLayers = NumDecoderLayers,
        RelativeAttentionNumBuckets = RelativeAttentionNumBuckets,
        RelativeAttentionMaxDistance = RelativeAttentionMaxDistance,
        LayerNormEpsilon = LayerNormEpsilon,
        FeedForwardProj = FeedForwardProjName,
        IsGatedAct = IsGatedAct,
        DenseActFn = FeedForwardProj switch { T5FeedForward.GatedGelu => "gelu_new", T5FeedForward.GatedSilu => "silu", _ => "relu" },
        TieWordEmbeddings = TieWordEmbeddings,
        InitializerFactor = 1.0,
        DropoutRate = DropoutRate,
        DecoderStartTokenId = DecoderStartTokenId,
        PadTokenId = PadTokenId,
        EosTokenId = EosTokenId,
        IsEncoderDecoder = true,
        TokenizerClass = TokenizerClass,
    }, ModelJsonContext.Default.T5ConfigJson);
}

/// <summary>config.json as written by transformers; every field optional so that absent ones take
/// HF's defaults.</summary>
internal sealed class T5ConfigJson
{
    [JsonPropertyName("architectures")] public string[]? Architectures { get; set; }
    [JsonPropertyName("model_type")] public string? ModelType { get; set; }
    [JsonPropertyName("vocab_size")] public int? VocabSize { get; set; }
    [JsonPropertyName("d_model")] public int? DModel { get; set; }
    [JsonPropertyName("d_kv")] public int? DKv { get; set; }
    [JsonPropertyName("num_heads")] public int? NumHeads { get; set; }
    [JsonPropertyName("d_ff")] public int? DFf { get; set; }
    [JsonPropertyName("num_layers")] public int? NumLayers { get; set; }
    [JsonPropertyName("num_decoder_layers")] public int? NumDecoderLayers { get; set; }
    [JsonPropertyName("relative_attention_num_buckets")] public int? RelativeAttentionNumBuckets { get; set; }
    [JsonPropertyName("relative_attention_max_distance")] public int? RelativeAttentionMaxDistance { get; set; }
    [JsonPropertyName("layer_norm_epsilon")] public double? LayerNormEpsilon { get; set; }
    [JsonPropertyName("feed_forward_proj")] public string? FeedForwardProj { get; set; }
    [JsonPropertyName("is_gated_act")] public bool? IsGatedAct { get; set; }
    [JsonPropertyName("dense_act_fn")] public string? DenseActFn { get; set; }
    [JsonPropertyName("tie_word_embeddings")] public bool? TieWordEmbeddings { get; set; }
    [JsonPropertyName("initializer_factor")] public double? InitializerFactor { get; set; }
    [JsonPropertyName("dropout_rate")] public double? DropoutRate { get; set; }
    [JsonPropertyName("decoder_start_token_id")] public int? DecoderStartTokenId { get; set; }
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; set; }
    [JsonPropertyName("eos_token_id")] public int? EosTokenId { get; set; }
    [JsonPropertyName("is_encoder_decoder")] public bool? IsEncoderDecoder { get; set; }
    [JsonPropertyName("tokenizer_class")] public string? TokenizerClass { get; set; }
}
