using System.Text;
using System.Text.Json;

namespace VkPrompt.Model.Tokenization;

/// <summary>
/// The T5 tokenizer as Hugging Face's (slow, legacy) T5Tokenizer applies it: the text is split on the special tokens
/// (&lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt;, &lt;extra_id_N&gt;), each remaining chunk is encoded by the SentencePiece
/// Unigram model, and &lt;/s&gt; is appended.
/// </summary>
/// <remarks>
/// We implement SentencePiece ourselves rather than use Microsoft.ML.Tokenizers: that library emits one &lt;unk&gt;
/// per unknown character, whereas sentencepiece (and so T5) merges a run of unknown characters into a single
/// &lt;unk&gt;, and the ids must match the reference model's id for id.
/// </remarks>
public sealed class T5Tokenizer
{
    /// <summary>HF T5Tokenizer's default extra_ids: sentinel &lt;extra_id_N&gt; has id spm_vocab_size + 99 - N.</summary>
    const int ExtraIdCount = 100;

    enum TokenKind : byte { Text, Special, Sentinel }

    readonly SentencePieceModel _model;
    readonly string[] _tokens;
    readonly TokenKind[] _kinds;
    readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _splitTokens = new(StringComparer.Ordinal);
    readonly int _longestSplitToken;

    /// <summary>Token ids the tokenizer can produce: its pieces plus T5's sentinel tokens.</summary>
    public int VocabSize => _tokens.Length;
    /// <summary>The padding token, 0 in every T5 vocabulary.</summary>
    public int PadId => 0;
    /// <summary>The end-of-sequence token, 1, which <see cref="Encode"/> appends.</summary>
    public int EosId => 1;
    /// <summary>The id of text the vocabulary cannot spell, 2.</summary>
    public int UnkId => 2;

    T5Tokenizer(SentencePieceModel model, string[] tokens, string source)
    {
        _model = model;
        _tokens = tokens;
        _kinds = new TokenKind[tokens.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            if (!_ids.TryAdd(tokens[id], id))
                throw new ModelFormatException(source, $"token '{tokens[id]}' is defined twice");
            _kinds[id] = id < model.Pieces.Count && model.Pieces[id].Type is PieceType.Control or PieceType.Unknown
                ? TokenKind.Special
                : TokenKind.Text;
        }
        if (model.UnkId != UnkId || !IsSpecial(PadId, "<pad>") || !IsSpecial(EosId, "</s>") || !IsSpecial(UnkId, "<unk>"))
            throw new ModelFormatException(source, "not a T5 vocabulary: expected <pad> = 0, </s> = 1, <unk> = 2");
        _splitTokens.Add("<pad>", PadId);
        _splitTokens.Add("</s>", EosId);
        _splitTokens.Add("<unk>", UnkId);
        for (int n = 0; n < ExtraIdCount; n++)
        {
            string sentinel = Sentinel(n);
            if (!_ids.TryGetValue(sentinel, out int id))
                throw new ModelFormatException(source, $"not a T5 vocabulary: {sentinel} is missing");
            _kinds[id] = TokenKind.Sentinel;
            _splitTokens.Add(sentinel, id);
        }
        _longestSplitToken = _splitTokens.Keys.Max(t => t.Length);

        bool IsSpecial(int id, string text) =>
            id < model.Pieces.Count && model.Pieces[id] is { Type: PieceType.Control or PieceType.Unknown } piece && piece.Text == text;
    }

    static string Sentinel(int n) => $"<extra_id_{n}>";

    /// <summary>
    /// Loads spiece.model from the directory or, failing that, tokenizer.json (an HF fast tokenizer in the T5 form:
    /// Unigram model, Precompiled charsmap normalizer, Metaspace pre-tokenizer), which is read as a description of
    /// the same SentencePiece model.
    /// </summary>
    public static T5Tokenizer Load(string modelDir)
    {
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
            return new T5Tokenizer(model, tokens, spiece);
        }
        string json = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(json))
            return LoadTokenizerJson(json);
        throw new ModelFormatException(spiece, "file not found (and no tokenizer.json next to it)");
    }

    /// <summary>The id of a token (a piece or a special token), or null when it is not in the vocabulary.</summary>
    public int? TokenToId(string piece) => _ids.TryGetValue(piece, out int id) ? id : null;

    /// <summary>
    /// Token ids of text followed by &lt;/s&gt;. As in HF T5Tokenizer, special tokens written literally in the text map
    /// to their ids, whitespace around a sentinel is dropped, and no second &lt;/s&gt; is added when the text already
    /// ends with one.
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
            if (i > 0 && IsSentinel(chunks[i - 1].SpecialId))
                chunk = chunk.TrimStart(PythonWhitespace);
            if (i + 1 < chunks.Count && IsSentinel(chunks[i + 1].SpecialId))
                chunk = chunk.TrimEnd(PythonWhitespace);
            foreach (string piece in _model.EncodeAsPieces(chunk))
                ids.Add(_splitTokens.TryGetValue(piece, out int id) ? id : _model.PieceToId(piece));
        }
        if (addEos && (ids.Count == 0 || ids[^1] != EosId))
            ids.Add(EosId);
        return [.. ids];
    }

    bool IsSentinel(int specialId) => specialId >= 0 && _kinds[specialId] == TokenKind.Sentinel;

    /// <summary>
    /// Text of the ids: pieces joined with U+2581 read as a space and leading/trailing spaces dropped. Sentinels are
    /// always rendered as &lt;extra_id_N&gt;, set off by spaces as HF does when it keeps them (HF's
    /// skip_special_tokens would drop them, losing the span structure of T5 outputs). With skipSpecial,
    /// &lt;pad&gt;, &lt;/s&gt; and &lt;unk&gt; are dropped, otherwise written literally. HF's
    /// clean_up_tokenization_spaces is not applied. Ids the tokenizer has no piece for have no text and
    /// are left out, as HF's fast tokenizer leaves them out: T5's embedding has more rows than its
    /// tokenizer has pieces (32128 for 32100), and a model can still pick one.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecial = true)
    {
        var parts = new List<string>();
        var run = new StringBuilder();
        var pieces = new StringBuilder();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length) continue;
            switch (_kinds[id])
            {
                case TokenKind.Text:
                    pieces.Append(_tokens[id]);
                    break;
                case TokenKind.Special when !skipSpecial:
                    FlushPieces();
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

        void FlushPieces()
        {
            run.Append(pieces.Replace('\u2581', ' ').ToString().TrimStart(' '));
            pieces.Clear();
        }

        void FlushRun()
        {
            FlushPieces();
            string text = run.ToString().Trim(PythonWhitespace);
            if (text.Length > 0)
                parts.Add(text);
            run.Clear();
        }
    }

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
            throw new ModelFormatException(path, $"invalid JSON: {e.Message}");
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
            vocab.Add((entry[0].GetString()!, (float)entry[1].GetDouble()));
        var addedTokens = new Dictionary<int, (string Text, bool Special)>();
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in added.EnumerateArray())
                addedTokens[token.GetProperty("id").GetInt32()] = (token.GetProperty("content").GetString()!, token.GetProperty("special").GetBoolean());
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
        return new T5Tokenizer(spm, tokens, path);
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
