using System.Text;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Tokenization;
using Xunit;
using static VkPrompt.Tests.Model.ModelTestFiles;

namespace VkPrompt.Tests.Model;

/// <summary>ByT5's byte tokenizer against HF's ByT5Tokenizer: golden ids from tiny-byt5, and the rules of
/// tokenization_byt5.py (byte b is b + 3, sentinels 259 + N, no normalisation, errors="ignore" decoding).</summary>
public sealed class ByT5TokenizerTests
{
    static readonly Lazy<T5Tokenizer> Shared = new(() => T5Tokenizer.Load(TinyByT5));
    static T5Tokenizer Tok => Shared.Value;

    static int[] Bytes(string text) => [.. Encoding.UTF8.GetBytes(text).Select(b => b + 3)];

    public static TheoryData<string, int[]> GoldenLines() => TokenizerTests.GoldenTokens(TinyByT5);

    [Theory, MemberData(nameof(GoldenLines))]
    public void EncodeMatchesGolden(string text, int[] ids) => Assert.Equal(ids, Tok.Encode(text));

    /// <summary>Bytes keep everything, whitespace included, so decoding gives back the text itself.</summary>
    [Theory, MemberData(nameof(GoldenLines))]
    public void DecodeRoundTrips(string text, int[] ids) => Assert.Equal(text, Tok.Decode(ids));

    [Fact]
    public void VocabularyIsBytesThenSentinelsInOrder()
    {
        Assert.True(Tok.IsByteLevel);
        Assert.Equal(384, Tok.VocabSize);
        Assert.Equal(259, Tok.TokenToId("<extra_id_0>"));
        Assert.Equal(383, Tok.TokenToId("<extra_id_124>"));
        Assert.Null(Tok.TokenToId("<extra_id_125>"));
        Assert.Equal(100, Tok.TokenToId("a"));
        Assert.Equal((0, 1, 2), (Tok.TokenToId("<pad>"), Tok.TokenToId("</s>"), Tok.TokenToId("<unk>")));
    }

    [Theory]
    [InlineData("é", new[] { 0xC3, 0xA9 })]
    [InlineData("日", new[] { 0xE6, 0x97, 0xA5 })]
    [InlineData("🙂", new[] { 0xF0, 0x9F, 0x99, 0x82 })]
    public void MultiByteCharactersAreTheirUtf8Bytes(string text, int[] utf8)
    {
        Assert.Equal([.. utf8.Select(b => b + 3), 1], Tok.Encode(text));
        Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
    }

    /// <summary>Text and its NFKC form (what T5's SentencePiece normaliser would make of it); ByT5 encodes the
    /// bytes as written.</summary>
    [Theory]
    [InlineData("ﬁ", "fi")]
    [InlineData("ＡＢＣ", "ABC")]
    [InlineData("①", "1")]
    [InlineData("e\u0301", "\u00E9")]
    [InlineData("\u00A0nbsp\u3000", " nbsp ")]
    public void NoNormalisation(string text, string nfkc)
    {
        Assert.Equal([.. Bytes(text), 1], Tok.Encode(text));
        Assert.NotEqual(Tok.Encode(nfkc), Tok.Encode(text));
        Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
    }

    /// <summary>Sentinels written in the text are their ids and keep the spaces beside them (HF gives ByT5's
    /// sentinels no lstrip/rstrip); decoding sets them off by one more space, as HF's decode joins them.</summary>
    [Fact]
    public void ExtraIdsInText()
    {
        int[] ids = Tok.Encode("Hello <extra_id_0> world<extra_id_1>.");
        Assert.Equal([.. Bytes("Hello "), 259, .. Bytes(" world"), 260, .. Bytes("."), 1], ids);
        Assert.Equal("Hello  <extra_id_0>  world <extra_id_1> .", Tok.Decode(ids));
        Assert.Equal([.. Bytes("<extra_id_125>"), 1], Tok.Encode("<extra_id_125>"));
    }

    /// <summary>pad, eos and unk written in the text are their ids, and the whitespace beside them stays: HF's
    /// test_eos_in_input on google/byt5-small expects these ids.</summary>
    [Fact]
    public void PadEosUnkInTextKeepWhitespace()
    {
        Assert.Equal([86, 120, 112, 112, 100, 117, 124, 35, 114, 105, 35, 119, 107, 104, 35, 119, 104, 123, 119, 49, 35, 1], Tok.Encode("Summary of the text. </s>"));
        Assert.Equal([.. Bytes("a "), 1, .. Bytes("\tb"), 1], Tok.Encode("a </s>\tb"));
        Assert.Equal([0, .. Bytes(" Hello"), 1], Tok.Encode("<pad> Hello</s>"));
        Assert.Equal([.. Bytes("x "), 2, 1], Tok.Encode("x <unk>"));
        Assert.Equal("a </s>\tb</s>", Tok.Decode(Tok.Encode("a </s>\tb"), skipSpecial: false));
    }

    [Fact]
    public void DecodeDropsBytesThatAreNotWholeSequences()
    {
        int[] e = Bytes("é"), cjk = Bytes("日"), emoji = Bytes("🙂");
        Assert.Equal("", Tok.Decode([e[0]]));
        Assert.Equal("ab", Tok.Decode([.. Bytes("a"), cjk[0], cjk[1], .. Bytes("b")]));
        Assert.Equal("a", Tok.Decode([.. Bytes("a"), emoji[0], emoji[1], emoji[2]]));
        Assert.Equal("日", Tok.Decode([cjk[2], .. cjk, emoji[3]]));
        // Skipped special tokens do not split a sequence; kept ones (plain ASCII) do.
        Assert.Equal("é", Tok.Decode([e[0], 1, e[1]]));
        Assert.Equal("</s>", Tok.Decode([e[0], 1, e[1]], skipSpecial: false));
        // Ids past the tokenizer (a padded embedding) have no text.
        Assert.Equal("ab", Tok.Decode([.. Bytes("a"), 384, 511, .. Bytes("b")]));
    }

    [Fact]
    public void ConfigJsonAloneSelectsBytesAndTokenizerConfigSetsExtraIds()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), """{"tokenizer_class": "ByT5Tokenizer"}""");
        var tok = T5Tokenizer.Load(dir.Path);
        Assert.Equal((384, 259), (tok.VocabSize, tok.TokenToId("<extra_id_0>")));

        File.WriteAllText(dir.File("tokenizer_config.json"), """{"extra_ids": 3, "additional_special_tokens": ["<extra_id_0>", {"content": "<extra_id_1>"}, "<extra_id_2>"]}""");
        tok = T5Tokenizer.Load(dir.Path);
        Assert.Equal((262, 261), (tok.VocabSize, tok.TokenToId("<extra_id_2>")));
    }

    [Theory]
    [InlineData("""{"tokenizer_class": "ByT5Tokenizer", "additional_special_tokens": ["<extra_id_1>", "<extra_id_0>"], "extra_ids": 2}""", "additional_special_tokens")]
    [InlineData("""{"tokenizer_class": "ByT5Tokenizer", "extra_ids": -1}""", "extra_ids is -1")]
    [InlineData("""{"tokenizer_class": """, "invalid JSON")]
    public void BadTokenizerConfig(string json, string says)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer_config.json"), json);
        var e = Assert.Throws<ModelFormatException>(() => T5Tokenizer.Load(dir.Path));
        Assert.Equal(dir.File("tokenizer_config.json"), e.Path);
        Assert.Contains(says, e.Message);
    }
}
