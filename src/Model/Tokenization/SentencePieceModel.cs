using System.Text;

namespace VkPrompt.Model.Tokenization;

/// <summary>ModelProto.SentencePiece.Type; the numeric values are the ones stored in the file.</summary>
internal enum PieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

internal readonly record struct SentencePiece(string Text, float Score, PieceType Type);

/// <summary>The NormalizerSpec fields that affect encoding; the defaults are the proto defaults.</summary>
internal sealed record NormalizerSpec(
    byte[] PrecompiledCharsmap,
    bool AddDummyPrefix = true,
    bool RemoveExtraWhitespaces = true,
    bool EscapeWhitespaces = true);

/// <summary>
/// A SentencePiece Unigram model (spiece.model) and its encoder, matching the sentencepiece library's
/// optimized Viterbi encoder (unigram_model.cc, EncodeOptimized) piece for piece, ties included.
/// </summary>
internal sealed class SentencePieceModel
{
    // unigram_model.cc: an unknown character costs 10 more than the least likely piece.
    const float UnkPenalty = 10f;

    // sentencepiece starts its running maximum at C's FLT_MIN (the smallest positive normal float), not at
    // -FLT_MAX, so with the usual all-negative scores the "max score" stays FLT_MIN; user-defined piece scores
    // derive from it.
    const float FltMin = 1.17549435E-38f;

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    readonly SentencePiece[] _pieces;
    // sentencepiece keeps two maps: pieces the encoder may produce (normal, user-defined, unused) and reserved
    // ones (control, unknown, byte); PieceToId consults the reserved map first.
    readonly Dictionary<string, int> _normalIds = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _reservedIds = new(StringComparer.Ordinal);
    readonly PieceTrie _trie = new();
    readonly float _minScore = float.MaxValue;
    readonly float _maxScore = FltMin;

    public IReadOnlyList<SentencePiece> Pieces => _pieces;
    public NormalizerSpec NormalizerSpec { get; }
    public Normalizer Normalizer { get; }
    public int UnkId { get; } = -1;

    /// <summary>No piece the encoder may produce holds whitespace (U+2581) past its first
    /// character, as sentencepiece's split_by_whitespace trains them: every word then starts a
    /// piece, the best segmentation of a text is that of each word alone, and a text's prefix
    /// cut before whitespace encodes to a prefix of the text's pieces.</summary>
    public bool PiecesStopAtWhitespace { get; } = true;

    /// <param name="pieces">The vocabulary, by id.</param>
    /// <param name="normalizerSpec">How text is normalised before it is split.</param>
    /// <param name="source">The file the model came from, for error messages.</param>
    public SentencePieceModel(IReadOnlyList<SentencePiece> pieces, NormalizerSpec normalizerSpec, string source)
    {
        if (pieces.Count == 0)
            throw new ModelFormatException(source, "the model has no pieces");
        _pieces = [.. pieces];
        NormalizerSpec = normalizerSpec;
        var userDefined = new List<string>();
        for (int id = 0; id < _pieces.Length; id++)
        {
            var piece = _pieces[id];
            if (piece.Text.Length == 0)
                throw new ModelFormatException(source, $"piece {id} is empty");
            if (piece.Type is < PieceType.Normal or > PieceType.Byte)
                throw new ModelFormatException(source, $"piece {id} has unknown type {(int)piece.Type}");
            if (piece.Type == PieceType.Byte)
                throw new ModelFormatException(source, "byte pieces (byte_fallback) are not supported");
            bool encodable = piece.Type is PieceType.Normal or PieceType.UserDefined or PieceType.Unused;
            if (!(encodable ? _normalIds : _reservedIds).TryAdd(piece.Text, id))
                throw new ModelFormatException(source, $"piece '{piece.Text}' is defined twice");
            if (encodable)
            {
                _trie.Add(Encoding.UTF8.GetBytes(piece.Text), id);
                if (piece.Text.AsSpan(1).IndexOfAny('\u2581', ' ') >= 0) PiecesStopAtWhitespace = false;
            }
            switch (piece.Type)
            {
                case PieceType.Normal:
                    _minScore = Math.Min(_minScore, piece.Score);
                    _maxScore = Math.Max(_maxScore, piece.Score);
                    break;
                case PieceType.UserDefined:
                    userDefined.Add(piece.Text);
                    break;
                case PieceType.Unknown:
                    if (UnkId >= 0)
                        throw new ModelFormatException(source, "more than one unknown piece");
                    UnkId = id;
                    break;
            }
        }
        if (UnkId < 0)
            throw new ModelFormatException(source, "the model has no unknown piece");
        Normalizer = new Normalizer(normalizerSpec, userDefined, source);
    }

    public static SentencePieceModel Load(string path)
    {
        if (Directory.Exists(path)) throw new ModelFormatException(path, "is a directory; expected a SentencePiece model file (spiece.model)");
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ModelFormatException(path, "file not found");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot read the file: {e.Message}");
        }
        return Parse(data, path);
    }

    /// <summary>Parses a serialized ModelProto.</summary>
    /// <param name="data">The serialized model.</param>
    /// <param name="source">The file the bytes came from, for error messages.</param>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> data, string source)
    {
        var pieces = new List<SentencePiece>();
        var normalizer = new NormalizerSpec([]);
        int modelType = 1;
        bool whitespaceAsSuffix = false;
        try
        {
            var reader = new ProtoReader(data);
            while (reader.TryReadTag(out int field, out int wireType))
            {
                switch (field)
                {
                    case 1:
                        pieces.Add(ParsePiece(reader.ReadBytes(field, wireType), pieces.Count));
                        break;
                    case 2:
                        ParseTrainerSpec(reader.ReadBytes(field, wireType), ref modelType, ref whitespaceAsSuffix);
                        break;
                    case 3:
                        normalizer = ParseNormalizerSpec(reader.ReadBytes(field, wireType));
                        break;
                    default:
                        reader.Skip(wireType);
                        break;
                }
            }
        }
        catch (InvalidDataException e)
        {
            throw new ModelFormatException(source, $"not a valid sentencepiece model: {e.Message}");
        }

        if (modelType != 1)
        {
            string name = modelType switch { 2 => "BPE", 3 => "WORD", 4 => "CHAR", _ => modelType.ToString() };
            throw new ModelFormatException(source, $"model_type {name} is not supported (only Unigram)");
        }
        if (whitespaceAsSuffix)
            throw new ModelFormatException(source, "treat_whitespace_as_suffix is not supported");
        return new SentencePieceModel(pieces, normalizer, source);
    }

    static SentencePiece ParsePiece(ReadOnlySpan<byte> data, int id)
    {
        string text = "";
        float score = 0;
        var type = PieceType.Normal;
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field)
            {
                case 1:
                    text = DecodeUtf8(reader.ReadBytes(field, wireType), $"piece {id}");
                    break;
                case 2:
                    score = BitConverter.UInt32BitsToSingle(reader.ReadFixed32(field, wireType));
                    break;
                case 3:
                    type = (PieceType)(int)reader.ReadVarint(field, wireType);
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
        return new SentencePiece(text, score, type);
    }

    static void ParseTrainerSpec(ReadOnlySpan<byte> data, ref int modelType, ref bool whitespaceAsSuffix)
    {
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field)
            {
                case 3:
                    modelType = (int)reader.ReadVarint(field, wireType);
                    break;
                case 24:
                    whitespaceAsSuffix = reader.ReadVarint(field, wireType) != 0;
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
    }

    static NormalizerSpec ParseNormalizerSpec(ReadOnlySpan<byte> data)
    {
        byte[] charsmap = [];
        bool addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true;
        var reader = new ProtoReader(data);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field)
            {
                case 2:
                    charsmap = reader.ReadBytes(field, wireType).ToArray();
                    break;
                case 3:
                    addDummyPrefix = reader.ReadVarint(field, wireType) != 0;
                    break;
                case 4:
                    removeExtraWhitespaces = reader.ReadVarint(field, wireType) != 0;
                    break;
                case 5:
                    escapeWhitespaces = reader.ReadVarint(field, wireType) != 0;
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
        return new NormalizerSpec(charsmap, addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces);
    }

    static string DecodeUtf8(ReadOnlySpan<byte> bytes, string what)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new InvalidDataException($"{what} is not valid UTF-8");
        }
    }

    /// <summary>The id of a piece as sentencepiece's PieceToId: the unknown id for anything not in the vocabulary.</summary>
    public int PieceToId(string piece) =>
        _reservedIds.TryGetValue(piece, out int id) || _normalIds.TryGetValue(piece, out id) ? id : UnkId;

    /// <summary>
    /// Encodes text as sentencepiece's EncodeAsPieces does: normalize, take the best-scoring segmentation, and merge
    /// each run of consecutive unknown pieces into one piece.
    /// </summary>
    public List<string> EncodeAsPieces(string text)
    {
        byte[] normalized = Normalizer.Normalize(Encoding.UTF8.GetBytes(text));
        var pieces = new List<string>();
        int runStart = -1, runEnd = -1;
        bool runIsUnknown = false;
        foreach (var (start, end, id) in BestPath(normalized))
        {
            bool unknown = _pieces[id].Type == PieceType.Unknown;
            if (unknown && runIsUnknown)
            {
                runEnd = end;
                continue;
            }
            if (runStart >= 0)
                pieces.Add(Encoding.UTF8.GetString(normalized, runStart, runEnd - runStart));
            (runStart, runEnd, runIsUnknown) = (start, end, unknown);
        }
        if (runStart >= 0)
            pieces.Add(Encoding.UTF8.GetString(normalized, runStart, runEnd - runStart));
        return pieces;
    }

    /// <summary>
    /// The Viterbi best path over byte positions, as sentencepiece's optimized encoder computes it: starts advance
    /// one character at a time, and a candidate replaces the best path into its end only if strictly better, so a tie
    /// goes to the candidate seen first: the one whose last piece starts earliest.
    /// </summary>
    List<(int Start, int End, int Id)> BestPath(byte[] text)
    {
        int n = text.Length;
        var bestScore = new float[n + 1];
        var bestStart = new int[n + 1];
        var bestId = new int[n + 1];
        Array.Fill(bestStart, -1);
        float unkScore = _minScore - UnkPenalty;

        for (int start = 0; start < n;)
        {
            int charLength = Math.Min(Normalizer.Utf8CharLength(text[start]), n - start);
            float scoreHere = bestScore[start];
            bool hasSingleCharPiece = false;
            int node = PieceTrie.Root;
            for (int end = start; end < n;)
            {
                node = _trie.Child(node, text[end++]);
                if (node < 0)
                    break;
                int id = _trie.Value(node);
                if (id < 0 || _pieces[id].Type == PieceType.Unused)
                    continue;
                int length = end - start;
                // sentencepiece's score is `user_defined ? length * max_score - 0.1 : score`, and that conditional
                // has type double (0.1 is a double literal), so every candidate is summed and compared in double
                // and only rounded to float when stored. Near-ties depend on this.
                double score = _pieces[id].Type == PieceType.UserDefined ? length * _maxScore - 0.1 : _pieces[id].Score;
                double candidate = score + scoreHere;
                if (bestStart[end] < 0 || candidate > bestScore[end])
                    (bestScore[end], bestStart[end], bestId[end]) = ((float)candidate, start, id);
                if (length == charLength)
                    hasSingleCharPiece = true;
            }
            if (!hasSingleCharPiece)
            {
                // Unlike piece candidates, this sum is float + float in sentencepiece.
                int end = start + charLength;
                float candidate = unkScore + scoreHere;
                if (bestStart[end] < 0 || candidate > bestScore[end])
                    (bestScore[end], bestStart[end], bestId[end]) = (candidate, start, UnkId);
            }
            start += charLength;
        }

        var path = new List<(int, int, int)>();
        for (int end = n; end > 0; end = bestStart[end])
            path.Add((bestStart[end], end, bestId[end]));
        path.Reverse();
        return path;
    }

    /// <summary>A byte trie of the encodable pieces (sentencepiece uses a darts-clone double array; lookups agree).</summary>
    sealed class PieceTrie
    {
        public const int Root = 0;
        readonly Dictionary<long, int> _children = [];
        readonly List<int> _values = [-1];

        public void Add(ReadOnlySpan<byte> key, int id)
        {
            int node = Root;
            foreach (byte b in key)
            {
                int child = Child(node, b);
                if (child < 0)
                {
                    child = _values.Count;
                    _values.Add(-1);
                    _children.Add(((long)node << 8) | b, child);
                }
                node = child;
            }
            _values[node] = id;
        }

        public int Child(int node, byte b) => _children.TryGetValue(((long)node << 8) | b, out int child) ? child : -1;

        public int Value(int node) => _values[node];
    }

    /// <summary>
    /// A minimal protobuf wire-format reader. Hand-written because there are no generated classes for
    /// sentencepiece_model.proto here (no protoc in the build), and Google.Protobuf without them would still need
    /// this same field-by-field walking. Malformed input throws InvalidDataException.
    /// </summary>
    ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        ReadOnlySpan<byte> _rest = data;

        public bool TryReadTag(out int field, out int wireType)
        {
            field = wireType = 0;
            if (_rest.IsEmpty)
                return false;
            ulong tag = ReadRawVarint();
            if (tag >> 3 is 0 or > int.MaxValue)
                throw new InvalidDataException($"invalid field number {tag >> 3}");
            (field, wireType) = ((int)(tag >> 3), (int)(tag & 7));
            return true;
        }

        public ulong ReadVarint(int field, int wireType)
        {
            Expect(field, wireType, 0);
            return ReadRawVarint();
        }

        public uint ReadFixed32(int field, int wireType)
        {
            Expect(field, wireType, 5);
            return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
        }

        public ReadOnlySpan<byte> ReadBytes(int field, int wireType)
        {
            Expect(field, wireType, 2);
            return Take(ReadRawVarint());
        }

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case 0: ReadRawVarint(); break;
                case 1: Take(8); break;
                case 2: Take(ReadRawVarint()); break;
                case 5: Take(4); break;
                default: throw new InvalidDataException($"unsupported wire type {wireType}");
            }
        }

        static void Expect(int field, int wireType, int expected)
        {
            if (wireType != expected)
                throw new InvalidDataException($"field {field} has wire type {wireType}, expected {expected}");
        }

        ulong ReadRawVarint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = Take(1)[0];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                    return value;
            }
            throw new InvalidDataException("varint longer than 10 bytes");
        }

        ReadOnlySpan<byte> Take(ulong count)
        {
            if (count > (ulong)_rest.Length)
                throw new InvalidDataException("truncated data");
            var taken = _rest[..(int)count];
            _rest = _rest[(int)count..];
            return taken;
        }
    }
}
