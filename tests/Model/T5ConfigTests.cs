using VkPrompt.Model;
using Xunit;
using static VkPrompt.Tests.Model.ModelTestFiles;

namespace VkPrompt.Tests.Model;

public sealed class T5ConfigTests
{
    [Fact]
    public void GoldenV11()
    {
        var c = T5Config.Load(Path.Combine(TinyV11, "config.json"));
        Assert.Equal((904, 128, 32, 4, 256, 2, 2), (c.VocabSize, c.DModel, c.DKv, c.NumHeads, c.DFf, c.NumLayers, c.NumDecoderLayers));
        Assert.Equal(T5FeedForward.GatedGelu, c.FeedForwardProj);
        Assert.True(c.IsGatedAct);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal((32, 128, 1e-6, 0.1), (c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance, c.LayerNormEpsilon, c.DropoutRate));
        Assert.Equal((0, 0, 1), (c.DecoderStartTokenId, c.PadTokenId, c.EosTokenId));
    }

    [Fact]
    public void GoldenByT5()
    {
        var c = T5Config.Load(Path.Combine(TinyByT5, "config.json"));
        Assert.Equal((384, 64, 16, 3, 128, 3, 1), (c.VocabSize, c.DModel, c.DKv, c.NumHeads, c.DFf, c.NumLayers, c.NumDecoderLayers));
        Assert.Equal(T5FeedForward.GatedGelu, c.FeedForwardProj);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal("ByT5Tokenizer", c.TokenizerClass);
    }

    [Fact]
    public void GoldenV10()
    {
        var c = T5Config.Load(Path.Combine(TinyV10Bf16, "config.json"));
        Assert.Equal((64, 8, 6, 48, 96, 2, 3), (c.DModel, c.DKv, c.NumHeads, c.InnerDim, c.DFf, c.NumLayers, c.NumDecoderLayers));
        Assert.Equal(T5FeedForward.Relu, c.FeedForwardProj);
        Assert.False(c.IsGatedAct);
        Assert.True(c.TieWordEmbeddings);
    }

    [Fact]
    public void AbsentFieldsTakeHfDefaults()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, """{"d_model": 32, "num_layers": 3}""");
        var c = T5Config.Load(path);
        Assert.Equal(3, c.NumDecoderLayers);
        Assert.Equal((32128, 64, 8, 2048), (c.VocabSize, c.DKv, c.NumHeads, c.DFf));
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal(T5FeedForward.Relu, c.FeedForwardProj);
        Assert.Equal(3, (c with { NumLayers = 5 }).NumDecoderLayers);
        Assert.Equal(5, (new T5Config { NumLayers = 5 }).NumDecoderLayers);
    }

    [Theory]
    [InlineData("gated-gelu_new")]
    [InlineData("gated-gelu_pytorch_tanh")]
    public void HfSpellingsOfGatedGelu(string value)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, $$"""{"feed_forward_proj": "{{value}}"}""");
        Assert.Equal(T5FeedForward.GatedGelu, T5Config.Load(path).FeedForwardProj);
    }

    [Theory]
    [InlineData("gated-relu")]
    [InlineData("gelu")]
    [InlineData("swish")]
    public void UnknownFeedForwardProj(string value)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, $$"""{"feed_forward_proj": "{{value}}"}""");
        Fails(path, $"feed_forward_proj \"{value}\" is not supported", () => T5Config.Load(path));
    }

    [Theory]
    [InlineData("""{"d_model": "wide"}""", "not a valid T5 config")]
    [InlineData("""{"d_model": 0}""", "d_model is 0")]
    [InlineData("""{"model_type": "bart"}""", "model_type is \"bart\"")]
    [InlineData("""{"vocab_size": 10, "eos_token_id": 10}""", "eos_token_id 10 is outside the vocabulary")]
    [InlineData("{", "not a valid T5 config")]
    // Issue 21 finding 5: these reached RelativePosition.Bucket and came out negative or NaN.
    [InlineData("""{"relative_attention_num_buckets": 32, "relative_attention_max_distance": 1}""", "relative_attention_max_distance 1 with relative_attention_num_buckets 32: max_distance must be greater than num_buckets / 2 = 16")]
    [InlineData("""{"relative_attention_num_buckets": 32, "relative_attention_max_distance": 8}""", "relative_attention_max_distance 8 with relative_attention_num_buckets 32")]
    [InlineData("""{"relative_attention_num_buckets": 32, "relative_attention_max_distance": 16}""", "must be greater than num_buckets / 2 = 16")]
    [InlineData("""{"relative_attention_num_buckets": 2, "relative_attention_max_distance": 128}""", "relative_attention_num_buckets is 2; it must be at least 4")]
    public void BadConfig(string json, string says)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, json);
        Fails(path, says, () => T5Config.Load(path));
    }

    [Theory]
    [InlineData("t5-small")]
    [InlineData("t5-base")]
    [InlineData("t5-large")]
    [InlineData("t5-xl")]
    [InlineData("t5-xxl")]
    [InlineData("byt5-small")]
    [InlineData("ul2")]
    [InlineData("umt5-base")]
    public void ToJsonRoundTrips(string name)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        var c = T5Config.Named(name);
        File.WriteAllText(path, c.ToJson());
        Assert.Equal(c, T5Config.Load(path));
        Assert.Contains("\"feed_forward_proj\": \"" + c.FeedForwardProjName + "\"", c.ToJson());
        Assert.Contains("\"model_type\": \"" + (c.PerLayerPositionBias ? "umt5" : "t5") + "\"", c.ToJson());
    }

    [Fact]
    public void GatedSilu()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, """{"feed_forward_proj": "gated-silu", "d_kv": 256, "num_heads": 16, "d_model": 4096}""");
        var c = T5Config.Load(path);
        Assert.Equal(T5FeedForward.GatedSilu, c.FeedForwardProj);
        Assert.True(c.IsGatedAct);
        Assert.Equal(VkPrompt.Runtime.Kernels.GateActivation.Silu, c.GateActivation);
        // UL2's config.json omits tie_word_embeddings; HF then ties.
        Assert.True(c.TieWordEmbeddings);
        Assert.False(c.PerLayerPositionBias);
    }

    [Fact]
    public void UmT5TakesUmT5ConfigsDefaults()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, """{"model_type": "umt5", "d_model": 64}""");
        var c = T5Config.Load(path);
        Assert.True(c.PerLayerPositionBias);
        Assert.Equal((250112, 1024, 8, 6), (c.VocabSize, c.DFf, c.NumLayers, c.NumHeads));
        Assert.Equal(T5FeedForward.GatedGelu, c.FeedForwardProj);
        Assert.False(c.FeedForwardProjGiven);
        Assert.True(c.TieWordEmbeddings);
        var golden = T5Config.Load(Path.Combine(TestPaths.GoldenVariants, "tiny-umt5", "config.json"));
        Assert.Equal((true, 2, 3, T5FeedForward.GatedGelu), (golden.PerLayerPositionBias, golden.NumLayers, golden.NumDecoderLayers, golden.FeedForwardProj));
        Assert.False(T5Config.Load(Path.Combine(TestPaths.GoldenVariants, "tiny-ul2", "config.json")).PerLayerPositionBias);
    }

    [Fact]
    public void NamedShapes()
    {
        var small = T5Config.Named("t5-small");
        Assert.Equal((512, 6, 6, 8, 64, 2048, 32128), (small.DModel, small.NumLayers, small.NumDecoderLayers, small.NumHeads, small.DKv, small.DFf, small.VocabSize));
        Assert.False(small.IsGatedAct);
        Assert.True(small.TieWordEmbeddings);
        foreach (var (name, d, ff, heads, layers) in new[] { ("t5-base", 768, 2048, 12, 12), ("t5-large", 1024, 2816, 16, 24), ("t5-xl", 2048, 5120, 32, 24), ("t5-xxl", 4096, 10240, 64, 24) })
        {
            var c = T5Config.Named(name);
            Assert.Equal((d, ff, heads, layers, layers, 64, 32128), (c.DModel, c.DFf, c.NumHeads, c.NumLayers, c.NumDecoderLayers, c.DKv, c.VocabSize));
            Assert.True(c.IsGatedAct);
            Assert.False(c.TieWordEmbeddings);
        }
        var ul2 = T5Config.Named("ul2");
        Assert.Equal((4096, 256, 16, 16384, 32, 32, 32128, T5FeedForward.GatedSilu, false), (ul2.DModel, ul2.DKv, ul2.NumHeads, ul2.DFf, ul2.NumLayers, ul2.NumDecoderLayers, ul2.VocabSize, ul2.FeedForwardProj, ul2.PerLayerPositionBias));
        var umt5 = T5Config.Named("umt5-base");
        Assert.Equal((768, 64, 12, 2048, 12, 12, 256384, T5FeedForward.GatedGelu, true), (umt5.DModel, umt5.DKv, umt5.NumHeads, umt5.DFf, umt5.NumLayers, umt5.NumDecoderLayers, umt5.VocabSize, umt5.FeedForwardProj, umt5.PerLayerPositionBias));
        var byt5 = T5Config.Named("byt5-small");
        Assert.Equal((1472, 64, 6, 3584, 12, 4, 384), (byt5.DModel, byt5.DKv, byt5.NumHeads, byt5.DFf, byt5.NumLayers, byt5.NumDecoderLayers, byt5.VocabSize));
        Assert.True(byt5.IsGatedAct);
        Assert.False(byt5.TieWordEmbeddings);
        Assert.Equal("ByT5Tokenizer", byt5.TokenizerClass);
        Assert.Null(T5Config.Named("t5-base").TokenizerClass);
        Assert.All(T5Config.ShapeNames, name => T5Config.Named(name));
        Assert.Contains("byt5-small", Assert.Throws<ArgumentException>(() => T5Config.Named("t5-xxxl")).Message);
    }
}
