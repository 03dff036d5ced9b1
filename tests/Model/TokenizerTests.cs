using System.Text;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Tokenization;
using Xunit;

namespace VkPrompt.Tests.Model;

public sealed class TokenizerTests
{
    static readonly string ModelDir = Path.Combine(TestPaths.Golden, "tiny-v11");
    static readonly Lazy<T5Tokenizer> Shared = new(() => T5Tokenizer.Load(ModelDir));
    static T5Tokenizer Tok => Shared.Value;

    public static TheoryData<string, int[]> GoldenLines() => GoldenTokens(ModelDir);

    /// <summary>A model's cases/tokens.jsonl: each line's text and the ids HF's tokenizer gave it.</summary>
    internal static TheoryData<string, int[]> GoldenTokens(string modelDir)
    {
        var data = new TheoryData<string, int[]>();
        foreach (string line in File.ReadLines(Path.Combine(modelDir, "cases", "tokens.jsonl")))
        {
            if (string.IsNullOrWhiteSpace(line))
                continue;
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            data.Add(root.GetProperty("text").GetString()!, [.. root.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())]);
        }
        return data;
    }

    [Theory, MemberData(nameof(GoldenLines))]
    public void EncodeMatchesGolden(string text, int[] ids) => Assert.Equal(ids, Tok.Encode(text));

    /// <summary>Encoding with a token limit, which stops at a prefix of a long text, gives exactly
    /// the whole text's ids cut as T5 cuts them (the first max-1 and eos), and says whether it cut:
    /// long texts built from the golden lines (special tokens, sentinels, odd whitespace and
    /// Unicode among them), at limits below, at and above their length, for SentencePiece and bytes.</summary>
    [Theory]
    [InlineData("tiny-v11")]
    [InlineData("../golden-variants/tiny-byt5")]
    public void EncodingToALimitIsTheWholeEncodingCut(string model)
    {
        string dir = Path.GetFullPath(Path.Combine(TestPaths.Golden, model));
        var tok = T5Tokenizer.Load(dir);
        var lines = GoldenTokens(dir).Select(row => (string)row[0]).ToList();
        var random = new Random(21);
        for (int trial = 0; trial < 12; trial++)
        {
            var text = new StringBuilder();
            while (text.Length < 20_000 * (1 + trial % 3)) text.Append(lines[random.Next(lines.Count)]).Append(" \t\n "[random.Next(4)]);
            string t = text.ToString();
            var whole = tok.Encode(t);
            foreach (int max in new[] { 1, 2, 7, 512, 2048, whole.Length - 1, whole.Length, whole.Length + 5 })
            {
                if (max < 1) continue;
                var cut = tok.Encode(t, max, out bool truncated);
                Assert.Equal(whole.Length > max, truncated);
                int[] expected = whole.Length > max ? [.. whole[..(max - 1)], whole[^1]] : whole;
                Assert.Equal(expected, cut);
            }
        }
    }

    /// <summary>Issue 21 finding 9: a 50 MB data line cut to 512 tokens is encoded only as far as
    /// its first tokens: what encoding it allocates is a small fraction of the line (it took 3-4 GB
    /// and 25 s when the whole line was encoded first).</summary>
    [Fact]
    public void AHugeLineIsEncodedOnlyAsFarAsTheLimit()
    {
        var words = string.Join(' ', Enumerable.Range(0, 1000).Select(i => $"word{i % 97} of the line"));
        string line = string.Concat(Enumerable.Repeat(words + " ", 50_000_000 / words.Length));
        var encoder = new ExampleEncoder(Tok, 512, 128);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var encoded = encoder.Encode(line, "yes");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(512, encoded.InputIds.Length);
        Assert.Equal(1, encoder.TruncatedInputs);
        Assert.Equal(Tok.Encode(line[..100_000])[..511], encoded.InputIds[..511]);
        Assert.True(allocated < 10_000_000, $"encoding the first 512 tokens of a {line.Length / 1_000_000} MB line allocated {allocated / 1_000_000} MB");
    }

    [Theory]
    [InlineData("Hello world")]
    [InlineData("The END.")]
    [InlineData("MiXeD CaSe WoRdS")]
    [InlineData("quote \"this\" and 'that'")]
    [InlineData("100,000.50")]
    [InlineData("Redistribution and use in source and binary forms, with or without modification, are permitted.")]
    public void DecodeRoundTripsPlainAscii(string text) => Assert.Equal(text, Tok.Decode(Tok.Encode(text)));

    [Fact]
    public void DecodeKeepsSpecialTokensWhenAsked()
    {
        int[] ids = [.. Tok.Encode("Hello", addEos: false), Tok.EosId, Tok.PadId];
        Assert.Equal("Hello", Tok.Decode(ids));
        Assert.Equal("Hello</s><pad>", Tok.Decode(ids, skipSpecial: false));
    }

    [Fact]
    public void DecodeLeavesOutIdsPastTheTokenizer()
    {
        // The golden models' embeddings have 904 rows for the tokenizer's 900 pieces.
        int[] hello = Tok.Encode("Hello", addEos: false);
        Assert.Equal("Hello world", Tok.Decode([.. hello, Tok.VocabSize, .. Tok.Encode(" world", addEos: false), Tok.VocabSize + 3]));
    }

    [Fact]
    public void ExtraIdsMapToTheEndOfTheVocabulary()
    {
        Assert.Equal(900, Tok.VocabSize);
        Assert.Equal(899, Tok.TokenToId("<extra_id_0>"));
        Assert.Equal(800, Tok.TokenToId("<extra_id_99>"));
        Assert.Null(Tok.TokenToId("<extra_id_100>"));
        Assert.Equal([899, 1], Tok.Encode("<extra_id_0>"));

        int[] expected =
        [
            .. Tok.Encode("Hello", addEos: false), 899, .. Tok.Encode("world", addEos: false), 898,
            .. Tok.Encode(".", addEos: false), 1,
        ];
        int[] ids = Tok.Encode("Hello <extra_id_0> world<extra_id_1>.");
        Assert.Equal(expected, ids);
        Assert.Equal("Hello <extra_id_0> world <extra_id_1> .", Tok.Decode(ids));
    }

    [Fact]
    public void LiteralSpecialTokensAreSplitOff()
    {
        Assert.DoesNotContain(Tok.Encode("<extra_id_100>"), id => id >= 800);
        Assert.Equal([.. Tok.Encode("Hello", addEos: false), 1], Tok.Encode("Hello</s>"));
        Assert.Equal([0, .. Tok.Encode("Hello", addEos: false), 1], Tok.Encode("<pad>Hello"));
    }

    [Fact]
    public void RunOfUnknownCharactersIsOneUnk()
    {
        Assert.Single(Tok.Encode("a日本語のテキストb"), id => id == Tok.UnkId);
        Assert.Equal(2, Tok.Encode("a日本 語b").Count(id => id == Tok.UnkId));
    }

    [Fact]
    public void NormalizerPassesMalformedUtf8AsReplacementCharacter()
    {
        var normalizer = SentencePieceModel.Load(Path.Combine(ModelDir, "spiece.model")).Normalizer;
        Assert.Equal("\u2581a\uFFFDb"u8.ToArray(), normalizer.Normalize([(byte)'a', 0xFF, (byte)'b']));
        Assert.Equal("\u2581a\u2581b", normalizer.Normalize("  a \t\n b  "));
        Assert.Equal("\u2581fine\u2581ABC\u25811", normalizer.Normalize("ﬁne ＡＢＣ ①"));
    }

    static SentencePieceModel Synthetic(bool addDummyPrefix, params (string Text, float Score, PieceType Type)[] pieces) =>
        new([.. pieces.Select(p => new SentencePiece(p.Text, p.Score, p.Type))], new NormalizerSpec([], addDummyPrefix), "synthetic");

    /// <summary>
    /// Scores where summing candidates in float flips the choice; sentencepiece sums and compares them in double
    /// (0.1.97 gives p a a here).
    /// </summary>
    [Fact]
    public void NearTiesAreComparedAsSentencepieceDoes()
    {
        var spm = Synthetic(false,
            ("<pad>", 0, PieceType.Control), ("</s>", 0, PieceType.Control), ("<unk>", 0, PieceType.Unknown),
            ("p", -5.141681671142578f, PieceType.Normal), ("a", -7.8980631828308105f, PieceType.Normal),
            ("aa", -15.796126365661621f, PieceType.Normal));
        Assert.Equal(["p", "a", "a"], spm.EncodeAsPieces("paa"));
    }

    /// <summary>Expected pieces from sentencepiece 0.1.97 on the same vocabulary.</summary>
    [Fact]
    public void UserDefinedPiecesAreMatchedWhole()
    {
        var spm = Synthetic(true,
            ("<pad>", 0, PieceType.Control), ("</s>", 0, PieceType.Control), ("<unk>", 0, PieceType.Unknown),
            ("\u2581", -2, PieceType.Normal), ("a", -3, PieceType.Normal), ("b", -3, PieceType.Normal),
            ("<", -4, PieceType.Normal), ("s", -4, PieceType.Normal), (">", -4, PieceType.Normal),
            ("e", -4, PieceType.Normal), ("p", -4, PieceType.Normal), ("<sep>", 0, PieceType.UserDefined),
            ("\u2581a", -1, PieceType.Normal), ("ab", -1, PieceType.Normal));
        Assert.Equal(["\u2581a", "<sep>", "b"], spm.EncodeAsPieces("a<sep>b"));
        Assert.Equal(["\u2581", "ab", "\u2581", "<sep>", "\u2581", "<sep>", "a"], spm.EncodeAsPieces("ab <sep>  <sep>a"));
    }

    public static TheoryData<string, byte[]> CorruptModels()
    {
        byte[] real = File.ReadAllBytes(Path.Combine(ModelDir, "spiece.model"));
        var noise = new byte[4096];
        new Random(7).NextBytes(noise);
        return new()
        {
            { "empty", [] },
            { "truncated", real[..1000] },
            { "noise", noise },
            { "text", "not a model\n"u8.ToArray() },
        };
    }

    [Theory, MemberData(nameof(CorruptModels))]
    public void CorruptModelFileIsAModelFormatException(string kind, byte[] content)
    {
        string dir = Directory.CreateTempSubdirectory("vkprompt-tok-").FullName;
        try
        {
            string file = Path.Combine(dir, "spiece.model");
            File.WriteAllBytes(file, content);
            var e = Assert.Throws<ModelFormatException>(() => T5Tokenizer.Load(dir));
            Assert.Equal(file, e.Path);
            Assert.Contains(file, e.Message);
            Assert.True(e.Message.Length > file.Length + 2, $"{kind}: the message should say what is wrong");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void MissingModelIsAModelFormatException()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vkprompt-no-such-model");
        var e = Assert.Throws<ModelFormatException>(() => T5Tokenizer.Load(dir));
        Assert.Equal($"{dir}: model directory not found", e.Message);
        using var empty = new TempDir();
        e = Assert.Throws<ModelFormatException>(() => T5Tokenizer.Load(empty.Path));
        Assert.StartsWith($"{Path.Combine(empty.Path, "spiece.model")}: file not found", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A tokenizer.json built from spiece.model (as HF's T5 converter lays it out) encodes identically.</summary>
    [Fact]
    public void TokenizerJsonEncodesLikeSpieceModel()
    {
        string dir = Directory.CreateTempSubdirectory("vkprompt-tok-").FullName;
        try
        {
            var spm = SentencePieceModel.Load(Path.Combine(ModelDir, "spiece.model"));
            File.WriteAllBytes(Path.Combine(dir, "tokenizer.json"), VkPrompt.Fuzz.Seeds.TokenizerJson(spm));
            var fromJson = T5Tokenizer.Load(dir);
            Assert.Equal(Tok.VocabSize, fromJson.VocabSize);
            foreach (var row in GoldenLines())
            {
                var (text, ids) = ((string)row[0], (int[])row[1]);
                Assert.Equal(ids, fromJson.Encode(text));
                Assert.Equal(Tok.Decode(ids, skipSpecial: false), fromJson.Decode(ids, skipSpecial: false));
            }
            Assert.Equal(Tok.Encode("a <extra_id_7> b"), fromJson.Encode("a <extra_id_7> b"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
