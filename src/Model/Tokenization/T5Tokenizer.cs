using System.Text;
using System.Text.Json;

namespace VkPrompt.Model.Tokenization;

/// <summary>
/// The tokenizer of a T5-family model as Hugging Face's (slow) tokenizers apply it: the text is split on the special
/// tokens (&lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt;, &lt;extra_id_N&gt;), each remaining chunk is encoded, and &lt;/s&gt;
/// is appended. A chunk is encoded by the SentencePiece Unigram model (T5Tokenizer: T5, mT5, Flan-T5, UL2, umT5) or,
/// for ByT5 (ByT5Tokenizer), as its UTF-8 bytes: byte b is token b + 3, with no normalisation at all.
/// </summary>
/// <remarks>
/// We implement SentencePiece ourselves rather than use Microsoft.ML.Tokenizers: that library emits one &lt;unk&gt;
/// per unknown character, whereas sentencepiece (and so T5) merges a run of unknown characters into a single
/// &lt;unk&gt;, and the ids must match the reference model's id for id.
/// </remarks>
public sealed class T5Tokenizer
{
    /// <summary>HF T5Tokenizer's default extra_ids: sentinel &lt;extra_id_N&gt; has id spm_vocab_size + 99 - N.</summary>
    internal const int ExtraIdCount = 100;
    /// <summary>HF ByT5Tokenizer's default extra_ids.</summary>
    internal const int ByteExtraIdCount = 125;
    /// <summary>ByT5's byte b is token b + 3, after pad, eos and unk.</summary>
    const int ByteOffset = 3;

    enum TokenKind : byte { Text, Special, Sentinel }

    /// <summary>Null for ByT5's byte vocabulary.</summary>
    readonly SentencePieceModel? _model;
    readonly string[] _tokens;
    readonly TokenKind[] _kinds;
    readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _splitTokens = new(StringComparer.Ordinal);
    readonly int _longestSplitToken;

    /// <summary>Token ids the tokenizer can produce: its pieces (ByT5: pad, eos, unk and the 256 bytes) plus the sentinel tokens.</summary>
    public int VocabSize => _tokens.Length;
    /// <summary>The padding token, 0 in every T5 vocabulary.</summary>
    public int PadId => 0;
    /// <summary>The end-of-sequence token, 1, which <see cref="Encode(string, bool)"/> appends.</summary>
    public int EosId => 1;
    /// <summary>The id of text the vocabulary cannot spell, 2.</summary>
    public int UnkId => 2;

    /// <summary>Whether text is encoded as its UTF-8 bytes (ByT5) rather than by a SentencePiece model.</summary>
    internal bool IsByteLevel => _model is null;

    /// <summary>The ids of a byte vocabulary's text tokens, one per byte value.</summary>
    internal static readonly Range ByteIds = ByteOffset..(ByteOffset + 256);

    /// <param name="model">The SentencePiece model, or null for ByT5's bytes.</param>
    /// <param name="tokens">The text of every id, sentinels included.</param>
    /// <param name="extraIds">How many &lt;extra_id_N&gt; sentinels <paramref name="tokens"/> holds.</param>
    /// <param name="source">The file the vocabulary came from, for errors.</param>
    T5Tokenizer(SentencePieceModel? model, string[] tokens, int extraIds, string source)
    {
        _model = model;
        _tokens = tokens;
        _kinds = new TokenKind[tokens.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            if (!_ids.TryAdd(tokens[id], id))
                throw new ModelFormatException(source, $"token '{tokens[id]}' is defined twice");
            bool special = model is null
                ? id < ByteOffset
                : id < model.Pieces.Count && model.Pieces[id].Type is PieceType.Control or PieceType.Unknown;
            _kinds[id] = special ? TokenKind.Special : TokenKind.Text;
        }
        if ((model is not null && model.UnkId != UnkId) || !IsSpecial(PadId, "<pad>") || !IsSpecial(EosId, "</s>") || !IsSpecial(UnkId, "<unk>"))
            throw new ModelFormatException(source, "not a T5 vocabulary: expected <pad> = 0, </s> = 1, <unk> = 2");
        _splitTokens.Add("<pad>", PadId);
        _splitTokens.Add("</s>", EosId);
        _splitTokens.Add("<unk>", UnkId);
        for (int n = 0; n < extraIds; n++)
        {
            string sentinel = Sentinel(n);
            if (!_ids.TryGetValue(sentinel, out int id))
                throw new ModelFormatException(source, $"not a T5 vocabulary: {sentinel} is missing");
            _kinds[id] = TokenKind.Sentinel;
            _splitTokens.Add(sentinel, id);
        }
        _longestSplitToken = _splitTokens.Keys.Max(t => t.Length);

        bool IsSpecial(int id, string text) => id < tokens.Length && _kinds[id] == TokenKind.Special && tokens[id] == text;
    }

    static string Sentinel(int n) => $"<extra_id_{n}>";

    /// <summary>
    /// ByT5's vocabulary as HF's ByT5Tokenizer builds it: pad, eos, unk, the 256 bytes (each named by the character of
    /// its value, as HF's convert_tokens_to_ids reads them), then the sentinels in order, &lt;extra_id_N&gt; = 259 + N.
    /// (HF's docstring says &lt;extra_id_0&gt; is the last id, as in the original T5 preprocessing, but its code
    /// appends them as added tokens in order, and the ids must be HF's.)
    /// </summary>
    static T5Tokenizer Bytes(int extraIds, string source)
    {
        var tokens = new string[ByteOffset + 256 + extraIds];
        (tokens[0], tokens[1], tokens[2]) = ("<pad>", "</s>", "<unk>");
        for (int b = 0; b < 256; b++)
            tokens[ByteOffset + b] = ((char)b).ToString();
        for (int n = 0; n < extraIds; n++)
            tokens[ByteOffset + 256 + n] = Sentinel(n);
        return new T5Tokenizer(null, tokens, extraIds, source);
    }

    /// <summary>
    /// Loads the tokenizer of a model directory: ByT5's byte tokenizer when tokenizer_config.json (or, where that file
    /// does not say, config.json) names tokenizer_class ByT5Tokenizer, as HF's AutoTokenizer reads them; else
    /// spiece.model or, failing that, tokenizer.json (an HF fast tokenizer in the T5 form: Unigram model, Precompiled
    /// charsmap normalizer, Metaspace pre-tokenizer), which is read as a description of the same SentencePiece model.
    /// </summary>
    public static T5Tokenizer Load(string modelDir)
    {
        if (!Directory.Exists(modelDir))
            throw new ModelFormatException(Path.GetFullPath(modelDir), File.Exists(modelDir)
                ? "is a file; expected a model directory holding its tokenizer (spiece.model or tokenizer.json)"
                : "model directory not found");
        if (LoadByteTokenizer(modelDir) is { } bytes)
            return bytes;
        string spiece = Path.Combine(modelDir, "spiece.model");
        if (File.Exists(spiece))
        {
            var model = SentencePieceModel.Load(spiece);
            int size = model.Pieces.Count;
            var tokens = new string[size + ExtraIdCount];
            for (int id = 0; id < size; id++)
                tokens[id] = model.Pieces[id].Text;
            for (int n = 0; n < ExtraIdCount; n++)
                tokens[size + ExtraIdCount - 1 - n] = Sentinel(n);
            return new T5Tokenizer(model, tokens, ExtraIdCount, spiece);
        }
        string json = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(json))
            return LoadTokenizerJson(json);
        throw new ModelFormatException(spiece, "file not found (and no tokenizer.json next to it, nor a tokenizer_class ByT5Tokenizer in tokenizer_config.json or config.json)");
    }

    /// <summary>The byte tokenizer, when the directory's tokenizer_config.json or config.json selects it; else null.</summary>
    static T5Tokenizer? LoadByteTokenizer(string modelDir)
    {
        string tokenizerConfigPath = Path.Combine(modelDir, "tokenizer_config.json");
        var tokenizerConfig = ReadTokenizerConfig(tokenizerConfigPath);
        string? tokenizerClass = tokenizerConfig?.TokenizerClass ?? ReadTokenizerConfig(Path.Combine(modelDir, "config.json"))?.TokenizerClass;
        if (tokenizerClass != T5Config.ByteTokenizerClass)
            return null;
        int extraIds = tokenizerConfig?.ExtraIds ?? ByteExtraIdCount;
        if (extraIds < 0)
            throw new ModelFormatException(tokenizerConfigPath, $"extra_ids is {extraIds}; it must not be negative");
        // HF numbers additional_special_tokens in list order; any other list than the sentinels in order would give
        // ids we do not reproduce.
        if (tokenizerConfig?.AdditionalSpecialTokens is { ValueKind: JsonValueKind.Array } additional
            && additional.GetArrayLength() > 0
            && !additional.EnumerateArray().Select(TokenContent).SequenceEqual(Enumerable.Range(0, extraIds).Select(Sentinel)))
            throw new ModelFormatException(tokenizerConfigPath, $"additional_special_tokens other than <extra_id_0> ... <extra_id_{extraIds - 1}> in order are not supported");
        return Bytes(extraIds, tokenizerConfigPath);
    }

    /// <summary>An added token as tokenizer_config.json writes it: a string, or an AddedToken object's content.</summary>
    static string? TokenContent(JsonElement token) => token.ValueKind switch
    {
        JsonValueKind.String => token.GetString(),
        JsonValueKind.Object when token.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String => content.GetString(),
        _ => null,
    };

    /// <summary>The tokenizer fields of a JSON file, or null when there is no such file.</summary>
    static TokenizerConfigJson? ReadTokenizerConfig(string path)
    {
        if (!File.Exists(path))
            return null;
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), ModelJsonContext.Default.TokenizerConfigJson);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"invalid JSON: {JsonMessages.Describe(e)}");
        }
    }

    /// <summary>The id of a token (a piece, a special token, or for ByT5 the one character whose code is a byte value,
    /// as HF names bytes), or null when it is not in the vocabulary.</summary>
    public int? TokenToId(string piece) => _ids.TryGetValue(piece, out int id) ? id : null;

    /// <summary>
    /// Token ids of text followed by &lt;/s&gt;. As in HF's tokenizers, special tokens written literally in the text map
    /// to their ids and no second &lt;/s&gt; is added when the text already ends with one. For SentencePiece
    /// (T5Tokenizer) whitespace around a sentinel is dropped; bytes (ByT5Tokenizer) keep all of it. For bytes, a lone
    /// UTF-16 surrogate (which Python cannot encode at all) is encoded as U+FFFD.
    /// </summary>
    public int[] Encode(string text, bool addEos = true)
    {
        var ids = new List<int>();
        var chunks = SplitOnSpecialTokens(text);
        for (int i = 0; i < chunks.Count; i++)
        {
            var (chunk, specialId) = chunks[i];
            if (specialId >= 0)
            {
                ids.Add(specialId);
                continue;
            }
            if (i > 0 && StripsWhitespace(chunks[i - 1].SpecialId))
                chunk = chunk.TrimStart(PythonWhitespace);
            if (i + 1 < chunks.Count && StripsWhitespace(chunks[i + 1].SpecialId))
                chunk = chunk.TrimEnd(PythonWhitespace);
            if (_model is null)
            {
                foreach (byte b in Encoding.UTF8.GetBytes(chunk))
                    ids.Add(ByteOffset + b);
                continue;
            }
            foreach (string piece in _model.EncodeAsPieces(chunk))
                ids.Add(_splitTokens.TryGetValue(piece, out int id) ? id : _model.PieceToId(piece));
        }
        if (addEos && (ids.Count == 0 || ids[^1] != EosId))
            ids.Add(EosId);
        return [.. ids];
    }

    /// <summary>
    /// <see cref="Encode(string, bool)"/> cut as T5 truncates (the first <paramref name="maxTokens"/>-1
    /// ids and eos), with <paramref name="truncated"/> saying whether anything was cut. A text far
    /// longer than that is encoded only as far as needed: growing prefixes that end before
    /// whitespace, until one gives <paramref name="maxTokens"/> ids. That is exact where a
    /// prefix's ids are the first ids of the whole (bytes; SentencePiece models whose pieces stop
    /// at whitespace, <see cref="SentencePieceModel.PiecesStopAtWhitespace"/>), and makes a data
    /// line of 50 MB cost what its first words cost instead of seconds and gigabytes; other models
    /// encode the whole text.
    /// </summary>
    public int[] Encode(string text, int maxTokens, out bool truncated)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 1);
        if (_model is null || _model.PiecesStopAtWhitespace)
        {
            // Plenty for maxTokens ids of ordinary text; each round quadruples it.
            for (long chars = Math.Max(4096, 16L * maxTokens); chars < text.Length; chars *= 4)
            {
                int cut = text.AsSpan((int)chars).IndexOfAny(PythonWhitespace);
                if (cut < 0) break;
                var ids = Encode(text[..((int)chars + cut)], addEos: false);
                if (ids.Length < maxTokens) continue;
                truncated = true;
                return [.. ids.AsSpan(0, maxTokens - 1), EosId];
            }
        }
        var all = Encode(text);
        truncated = all.Length > maxTokens;
        return truncated ? [.. all.AsSpan(0, maxTokens - 1), all[^1]] : all;
    }

    /// <summary>
    /// Whether a special token eats the whitespace beside it, as HF's AddedToken lstrip/rstrip say: T5Tokenizer
    /// gives them to its sentinels; the released ByT5 models' tokenizer files give them to none (HF's own ByT5 test
    /// keeps the space in "summarization. &lt;/s&gt;"), and HF adds ByT5's sentinels without them.
    /// </summary>
    bool StripsWhitespace(int specialId) =>
        specialId >= 0 && _model is not null && _kinds[specialId] == TokenKind.Sentinel;

    /// <summary>
    /// Text of the ids. SentencePiece pieces are joined with U+2581 read as a space and leading/trailing spaces
    /// dropped; bytes are decoded as UTF-8 exactly as they are, bytes that are not part of a whole UTF-8 sequence left
    /// out (HF's errors="ignore"). Sentinels are always rendered as &lt;extra_id_N&gt;, set off by spaces as HF does
    /// when it keeps them (HF's skip_special_tokens would drop them, losing the span structure of T5 outputs). With
    /// skipSpecial, &lt;pad&gt;, &lt;/s&gt; and &lt;unk&gt; are dropped, otherwise written literally. HF's
    /// clean_up_tokenization_spaces is not applied. Ids the tokenizer has no token for have no text and are left out,
    /// as HF's fast tokenizer leaves them out: T5's embedding has more rows than its tokenizer has pieces (32128 for
    /// 32100), and a model can still pick one.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecial = true)
    {
        var parts = new List<string>();
        var run = new StringBuilder();
        var text = new List<int>();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length) continue;
            switch (_kinds[id])
            {
                case TokenKind.Text:
                    text.Add(id);
                    break;
                case TokenKind.Special when !skipSpecial:
                    FlushText();
                    run.Append(_tokens[id]);
                    break;
                case TokenKind.Sentinel:
                    FlushRun();
                    parts.Add(_tokens[id]);
                    break;
            }
        }
        FlushRun();
        return string.Join(' ', parts);

        void FlushText()
        {
            run.Append(TextOf(text));
            text.Clear();
        }

        void FlushRun()
        {
            FlushText();
            // SentencePiece's decoder strips the text's outer whitespace; bytes are the text as it was written.
            string part = _model is null ? run.ToString() : run.ToString().Trim(PythonWhitespace);
            if (part.Length > 0)
                parts.Add(part);
            run.Clear();
        }
    }

    /// <summary>The text of a run of text tokens (no special token among them).</summary>
    string TextOf(List<int> ids) => _model is null
        ? Utf8IgnoringErrors.GetString([.. ids.Select(id => (byte)(id - ByteOffset))])
        : string.Concat(ids.Select(id => _tokens[id])).Replace('\u2581', ' ').TrimStart(' ');

    /// <summary>UTF-8 that drops what is not a whole sequence, as Python's bytes.decode("utf-8", errors="ignore"); both
    /// reject the same maximal invalid subparts, so the same characters survive.</summary>
    static readonly Encoding Utf8IgnoringErrors =
        Encoding.GetEncoding("utf-8", EncoderFallback.ReplacementFallback, new DecoderReplacementFallback(string.Empty));

    /// <summary>Python's str.strip() whitespace, which HF applies around sentinels and to decoded text.</summary>
    static readonly char[] PythonWhitespace =
    [
        '\t', '\n', '\v', '\f', '\r', '\x1C', '\x1D', '\x1E', '\x1F', ' ', '\x85', '\xA0', '\u1680',
        '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200A',
        '\u2028', '\u2029', '\u202F', '\u205F', '\u3000',
    ];

    /// <summary>
    /// Splits text into plain chunks (SpecialId -1) and special tokens, leftmost first. Every special token is
    /// "&lt;...&gt;" with no other '&gt;', so a match can only run from a '&lt;' to the next '&gt;'.
    /// </summary>
    List<(string Text, int SpecialId)> SplitOnSpecialTokens(string text)
    {
        var chunks = new List<(string, int)>();
        int plainStart = 0;
        for (int i = text.IndexOf('<'); i >= 0; i = text.IndexOf('<', i + 1))
        {
            int close = text.IndexOf('>', i + 1, Math.Min(_longestSplitToken - 1, text.Length - i - 1));
            if (close < 0 || !_splitTokens.TryGetValue(text[i..(close + 1)], out int id))
                continue;
            if (i > plainStart)
                chunks.Add((text[plainStart..i], -1));
            chunks.Add((text[i..(close + 1)], id));
            plainStart = close + 1;
            i = close;
        }
        if (plainStart < text.Length)
            chunks.Add((text[plainStart..], -1));
        return chunks;
    }

    static T5Tokenizer LoadTokenizerJson(string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"invalid JSON: {JsonMessages.Describe(e)}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot read the file: {e.Message}");
        }
        using (document)
        {
            try
            {
                return FromTokenizerJson(document.RootElement, path);
            }
            catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or IndexOutOfRangeException or FormatException)
            {
                throw new ModelFormatException(path, $"unexpected tokenizer.json structure: {e.Message}");
            }
        }
    }

    static T5Tokenizer FromTokenizerJson(JsonElement root, string path)
    {
        var model = root.GetProperty("model");
        if (model.GetProperty("type").GetString() != "Unigram")
            throw new ModelFormatException(path, $"model type {model.GetProperty("type")} is not supported (only Unigram)");
        if (model.TryGetProperty("byte_fallback", out var byteFallback) && byteFallback.ValueKind == JsonValueKind.True)
            throw new ModelFormatException(path, "byte_fallback is not supported");
        int unkId = model.GetProperty("unk_id").GetInt32();

        var vocab = new List<(string Text, float Score)>();
        foreach (var entry in model.GetProperty("vocab").EnumerateArray())
        {
            // GetString() gives null for a JSON null, which would surface later as a NullReferenceException.
            if (entry.ValueKind != JsonValueKind.Array || entry.GetArrayLength() != 2 || entry[0].GetString() is not { } text)
                throw new ModelFormatException(path, $"vocab entry {vocab.Count} is not [piece, score]");
            vocab.Add((text, (float)entry[1].GetDouble()));
        }
        var addedTokens = new Dictionary<int, (string Text, bool Special)>();
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in added.EnumerateArray())
            {
                int id = token.GetProperty("id").GetInt32();
                // Every id below the largest must name a token, so a larger one is a damaged file,
                // refused before an array of that size is made.
                if (id < 0 || id >= vocab.Count + added.GetArrayLength())
                    throw new ModelFormatException(path, $"added token id {id} is outside the {vocab.Count + added.GetArrayLength()} ids of the vocabulary and added tokens");
                if (token.GetProperty("content").GetString() is not { } content)
                    throw new ModelFormatException(path, $"added token {id} has no content");
                addedTokens[id] = (content, token.GetProperty("special").GetBoolean());
            }
        }

        // Special added tokens correspond to sentencepiece control pieces and non-special ones to user-defined
        // pieces; sentinels beyond the Unigram vocabulary (if any) exist only as added tokens.
        var pieces = new SentencePiece[vocab.Count];
        for (int id = 0; id < vocab.Count; id++)
        {
            var type = id == unkId ? PieceType.Unknown
                : !addedTokens.TryGetValue(id, out var a) ? PieceType.Normal
                : a.Text != vocab[id].Text ? throw new ModelFormatException(path, $"added token {id} '{a.Text}' differs from the vocabulary's '{vocab[id].Text}'")
                : a.Special ? PieceType.Control : PieceType.UserDefined;
            pieces[id] = new SentencePiece(vocab[id].Text, vocab[id].Score, type);
        }
        var spm = new SentencePieceModel(pieces, ReadNormalizerSpec(root, path), path);

        int size = Math.Max(vocab.Count, addedTokens.Count == 0 ? 0 : addedTokens.Keys.Max() + 1);
        var tokens = new string[size];
        for (int id = 0; id < size; id++)
        {
            tokens[id] = id < vocab.Count ? vocab[id].Text
                : addedTokens.TryGetValue(id, out var a) ? a.Text
                : throw new ModelFormatException(path, $"no token has id {id}");
        }
        return new T5Tokenizer(spm, tokens, ExtraIdCount, path);
    }

    /// <summary>
    /// The sentencepiece normalizer settings a T5 tokenizer.json encodes: the Precompiled normalizer carries the
    /// charsmap, Metaspace's prefix option is add_dummy_prefix. Whitespace is always trimmed and collapsed, which is
    /// what the converter's WhitespaceSplit / Strip / Replace steps emulate.
    /// </summary>
    static NormalizerSpec ReadNormalizerSpec(JsonElement root, string path)
    {
        byte[] charsmap = [];
        if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind == JsonValueKind.Object)
        {
            foreach (var step in Flatten(normalizer, "normalizers"))
            {
                switch (step.GetProperty("type").GetString())
                {
                    case "Precompiled":
                        if (step.GetProperty("precompiled_charsmap").GetString() is { } base64)
                            charsmap = Convert.FromBase64String(base64);
                        break;
                    case "Strip" or "Replace":
                        break;
                    case var other:
                        throw new ModelFormatException(path, $"normalizer {other} is not supported (T5 form expected)");
                }
            }
        }

        bool? addPrefix = null;
        if (root.TryGetProperty("pre_tokenizer", out var preTokenizer) && preTokenizer.ValueKind == JsonValueKind.Object)
        {
            foreach (var step in Flatten(preTokenizer, "pretokenizers"))
            {
                switch (step.GetProperty("type").GetString())
                {
                    case "Metaspace":
                        if (step.GetProperty("replacement").GetString() != "\u2581")
                            throw new ModelFormatException(path, "Metaspace replacement must be U+2581");
                        addPrefix = step.TryGetProperty("prepend_scheme", out var scheme)
                            ? scheme.GetString() switch
                            {
                                "always" => true,
                                "never" => false,
                                var other => throw new ModelFormatException(path, $"Metaspace prepend_scheme '{other}' is not supported (legacy T5 form expected)"),
                            }
                            : !step.TryGetProperty("add_prefix_space", out var add) || add.GetBoolean();
                        break;
                    case "WhitespaceSplit":
                        break;
                    case var other:
                        throw new ModelFormatException(path, $"pre_tokenizer {other} is not supported (T5 form expected)");
                }
            }
        }
        if (addPrefix is not { } addDummyPrefix)
            throw new ModelFormatException(path, "no Metaspace pre_tokenizer (T5 form expected)");
        return new NormalizerSpec(charsmap, addDummyPrefix);
    }

    static IEnumerable<JsonElement> Flatten(JsonElement step, string listName) =>
        step.GetProperty("type").GetString() == "Sequence"
            ? step.GetProperty(listName).EnumerateArray().SelectMany(s => Flatten(s, listName))
            : [step];
}
