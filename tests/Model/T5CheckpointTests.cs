using System.Text.Json;
using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using Xunit;
using static VkPrompt.Tests.Model.ModelTestFiles;

namespace VkPrompt.Tests.Model;

public sealed class T5CheckpointTests
{
    [Theory]
    [InlineData("tiny-v11")]
    [InlineData("tiny-v10-bf16")]
    public void GoldenOpensAndEveryTensorReads(string model)
    {
        using var ckpt = T5Checkpoint.Open(Path.Combine(TestPaths.Golden, model));
        var needed = T5Names.All(ckpt.Config);
        Assert.Equal(ckpt.Config.TieWordEmbeddings ? 60 : 52, needed.Count);
        foreach (var (name, shape) in needed)
        {
            Assert.Equal(shape, ckpt.Info(name).Shape);
            var values = ckpt.ReadAll(name);
            Assert.All(values, v => Assert.True(float.IsFinite(v)));
            Assert.Contains(values, v => v != 0);
        }
    }

    /// <summary>tiny-byt5: 3 encoder and 1 decoder layers, an untied 384-row vocabulary.</summary>
    [Fact]
    public void GoldenByT5Opens()
    {
        using var ckpt = T5Checkpoint.Open(TinyByT5);
        Assert.Equal((3, 1), (ckpt.Config.NumLayers, ckpt.Config.NumDecoderLayers));
        Assert.Equal([384L, 64L], ckpt.Info(T5Names.Shared).Shape);
        Assert.Equal([384L, 64L], ckpt.Info(T5Names.LmHead).Shape);
        Assert.Equal([48L, 64L], ckpt.Info(T5Names.SelfAttn(T5Stack.Encoder, 2, "q")).Shape);
        Assert.Throws<KeyNotFoundException>(() => ckpt.Info(T5Names.SelfAttn(T5Stack.Decoder, 1, "q")));
        foreach (var (name, _) in T5Names.All(ckpt.Config))
            Assert.Contains(ckpt.ReadAll(name), v => v != 0);
    }

    [Fact]
    public void GoldenShapesFollowTheConfigNotDModel()
    {
        using var ckpt = T5Checkpoint.Open(TinyV10Bf16);
        Assert.Equal([48L, 64L], ckpt.Info(T5Names.SelfAttn(T5Stack.Encoder, 1, "q")).Shape);
        Assert.Equal([64L, 48L], ckpt.Info(T5Names.CrossAttn(2, "o")).Shape);
        Assert.Equal([32L, 6L], ckpt.Info(T5Names.RelativeBias(T5Stack.Decoder, 0)).Shape);
        Assert.Equal("decoder.block.2.layer.2.DenseReluDense.wi.weight", T5Names.FeedForward(T5Stack.Decoder, 2, "wi"));
        Assert.Equal("encoder.block.1.layer.1.layer_norm.weight", T5Names.FeedForwardNorm(T5Stack.Encoder, 1));
        Assert.Throws<KeyNotFoundException>(() => ckpt.Info(T5Names.LmHead));
    }

    [Fact]
    public void PartialReadStreamsFromTheOffset()
    {
        using var ckpt = T5Checkpoint.Open(TinyV11);
        var all = ckpt.ReadAll(T5Names.Shared);
        var row = new float[128];
        ckpt.Read(T5Names.Shared, row, firstElement: 5 * 128);
        Assert.Equal(all[(5 * 128)..(6 * 128)], row);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RandomT5RoundTrips(bool gated)
    {
        using var dir = new TempDir();
        // As many embedding rows as the tokenizer has tokens: Write refuses fewer.
        var cfg = Tiny(gated) with { VocabSize = 900 };
        RandomT5.Write(dir.Path, cfg, seed: 7, spieceModelPath: Path.Combine(TinyV11, "spiece.model"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(TinyV11, "spiece.model")), File.ReadAllBytes(dir.File("spiece.model")));
        using var ckpt = T5Checkpoint.Open(dir.Path);
        Assert.Equal(cfg, ckpt.Config);
        using (var file = SafetensorsFile.Open(dir.File("model.safetensors")))
            Assert.Equal(T5Names.All(cfg).Select(t => t.Name).Order(), file.Tensors.Keys.Order());
        Assert.All(ckpt.ReadAll(T5Names.FinalNorm(T5Stack.Decoder)), v => Assert.Equal(1f, v));
    }

    /// <summary>A byte-tokenizer config gets a tokenizer_config.json that selects bytes, and no SentencePiece model.</summary>
    [Fact]
    public void RandomT5WritesTheByteTokenizerConfig()
    {
        using var dir = new TempDir();
        var cfg = Tiny(gated: true) with { VocabSize = 384, TokenizerClass = "ByT5Tokenizer" };
        RandomT5.Write(dir.Path, cfg, seed: 7);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        Assert.Equal(cfg, ckpt.Config);
        var tok = VkPrompt.Model.Tokenization.T5Tokenizer.Load(dir.Path);
        Assert.Equal((384, 259), (tok.VocabSize, tok.TokenToId("<extra_id_0>")));
        File.Delete(dir.File("config.json"));
        Assert.Equal(384, VkPrompt.Model.Tokenization.T5Tokenizer.Load(dir.Path).VocabSize);
        Assert.Throws<ArgumentException>(() => RandomT5.Write(dir.Path, cfg, seed: 7, spieceModelPath: Path.Combine(TinyV11, "spiece.model")));
    }

    [Fact]
    public void UmT5HasABiasTablePerLayerAndT5One()
    {
        var t5 = Tiny(gated: true);
        var umt5 = t5 with { PerLayerPositionBias = true };
        string[] Biases(T5Config c) => T5Names.All(c).Select(t => t.Name).Where(n => n.EndsWith("relative_attention_bias.weight", StringComparison.Ordinal)).ToArray();
        Assert.Equal([T5Names.RelativeBias(T5Stack.Encoder, 0), T5Names.RelativeBias(T5Stack.Decoder, 0)], Biases(t5));
        Assert.Equal(t5.NumLayers + t5.NumDecoderLayers, Biases(umt5).Length);
        Assert.Contains("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight", Biases(umt5));
        Assert.Contains("decoder.block.2.layer.0.SelfAttention.relative_attention_bias.weight", Biases(umt5));

        using var dir = new TempDir();
        RandomT5.Write(dir.Path, umt5, seed: 4);
        using (var ckpt = T5Checkpoint.Open(dir.Path))
        {
            Assert.Equal(umt5, ckpt.Config);
            Assert.Empty(ckpt.Notices);
        }
        Fails(dir.File("model.safetensors"), "missing tensor decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight [8, 2]",
              () => T5Checkpoint.Open(Without(dir, "decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight")));
    }

    /// <summary>Rewrites dir's model.safetensors without <paramref name="name"/>; returns dir.</summary>
    static string Without(TempDir dir, string name)
    {
        var tensors = new List<(string, long[], ReadOnlyMemory<float>)>();
        using (var file = SafetensorsFile.Open(dir.File("model.safetensors")))
            foreach (var (key, info) in file.Tensors.Where(t => t.Key != name))
            {
                var data = new float[info.ElementCount];
                file.ReadFloat32(key, data);
                tensors.Add((key, info.Shape, data));
            }
        SafetensorsWriter.Write(dir.File("model.safetensors"), tensors);
        return dir.Path;
    }

    /// <summary>Some umT5 config.json files omit feed_forward_proj over gated weights: absent,
    /// the tensors decide and the checkpoint says so; named and contradicted, it is refused.</summary>
    [Fact]
    public void TheTensorsDecideAnAbsentFeedForwardProj()
    {
        using var dir = new TempDir();
        RandomT5.Write(dir.Path, Tiny(gated: true) with { VocabSize = 904 }, seed: 6, spieceModelPath: Path.Combine(TinyV11, "spiece.model"));
        var config = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!.AsObject();
        config.Remove("feed_forward_proj");
        File.WriteAllText(dir.File("config.json"), config.ToJsonString());
        using (var ckpt = T5Checkpoint.Open(dir.Path))
        {
            Assert.Equal(T5FeedForward.GatedGelu, ckpt.Config.FeedForwardProj);
            var notice = Assert.Single(ckpt.Notices);
            Assert.Contains("no feed_forward_proj (default \"relu\")", notice);
            Assert.Contains("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", notice);
        }
        // A host opening the model hears of it through its log.
        var log = new List<string>();
        using (var model = VkPrompt.Training.PromptModel.OpenOnCpu(dir.Path, log: log.Add))
            Assert.Contains(log, line => line.Contains("no feed_forward_proj", StringComparison.Ordinal));

        config["feed_forward_proj"] = "relu";
        File.WriteAllText(dir.File("config.json"), config.ToJsonString());
        Fails(dir.File("config.json"), "feed_forward_proj is \"relu\" but the checkpoint holds gated tensors (encoder.block.0.layer.1.DenseReluDense.wi_0.weight)",
              () => T5Checkpoint.Open(dir.Path));

        using var relu = new TempDir();
        RandomT5.Write(relu.Path, Tiny(gated: false), seed: 6);
        File.WriteAllText(relu.File("config.json"), File.ReadAllText(relu.File("config.json")).Replace("\"relu\"", "\"gated-silu\""));
        Fails(relu.File("config.json"), "feed_forward_proj is \"gated-silu\" but the checkpoint holds relu tensors (encoder.block.0.layer.1.DenseReluDense.wi.weight)",
              () => T5Checkpoint.Open(relu.Path));
    }

    [Fact]
    public void RandomT5IsDeterministicPerSeed()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        using var c = new TempDir();
        RandomT5.Write(a.Path, Tiny(), seed: 1);
        RandomT5.Write(b.Path, Tiny(), seed: 1);
        RandomT5.Write(c.Path, Tiny(), seed: 2);
        Assert.Equal(File.ReadAllBytes(a.File("model.safetensors")), File.ReadAllBytes(b.File("model.safetensors")));
        Assert.NotEqual(File.ReadAllBytes(a.File("model.safetensors")), File.ReadAllBytes(c.File("model.safetensors")));
    }

    [Fact]
    public void RandomT5UsesHfInitScales()
    {
        using var dir = new TempDir();
        var cfg = new T5Config { VocabSize = 100, DModel = 64, DKv = 16, NumHeads = 3, DFf = 200, NumLayers = 1, FeedForwardProj = T5FeedForward.GatedGelu, TieWordEmbeddings = false };
        RandomT5.Write(dir.Path, cfg, seed: 3);
        using var ckpt = T5Checkpoint.Open(dir.Path);
        void Std(string name, double expected)
        {
            var v = ckpt.ReadAll(name);
            double mean = v.Average(x => (double)x), std = Math.Sqrt(v.Average(x => (x - mean) * (x - mean)));
            Assert.InRange(std / expected, 0.9, 1.1);
            Assert.InRange(Math.Abs(mean), 0, 4 * expected / Math.Sqrt(v.Length));
        }
        Std(T5Names.Shared, 1);
        Std(T5Names.LmHead, 1);
        Std(T5Names.SelfAttn(T5Stack.Encoder, 0, "q"), Math.Pow(64 * 16, -0.5));
        Std(T5Names.SelfAttn(T5Stack.Encoder, 0, "k"), Math.Pow(64, -0.5));
        Std(T5Names.CrossAttn(0, "o"), Math.Pow(48, -0.5));
        Std(T5Names.FeedForward(T5Stack.Decoder, 0, "wi_1"), Math.Pow(64, -0.5));
        Std(T5Names.FeedForward(T5Stack.Decoder, 0, "wo"), Math.Pow(200, -0.5));
    }

    [Fact]
    public void ShardedCheckpointReadsLikeTheSingleFile()
    {
        using var single = new TempDir();
        RandomT5.Write(single.Path, Tiny(true), seed: 5);
        using var sharded = new TempDir();
        File.Copy(single.File("config.json"), sharded.File("config.json"));
        var map = Split(single.File("model.safetensors"), sharded.Path);
        File.WriteAllText(sharded.File("model.safetensors.index.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = 0 },
            ["weight_map"] = map,
        }));

        using var a = T5Checkpoint.Open(single.Path);
        using var b = T5Checkpoint.Open(sharded.Path);
        foreach (var (name, _) in T5Names.All(a.Config)) Assert.Equal(a.ReadAll(name), b.ReadAll(name));
    }

    /// <summary>Writes the tensors of <paramref name="source"/> alternately into two shards.</summary>
    static Dictionary<string, string> Split(string source, string dir)
    {
        using var file = SafetensorsFile.Open(source);
        var parts = new List<(string, long[], ReadOnlyMemory<float>)>[] { [], [] };
        var map = new Dictionary<string, string>();
        int i = 0;
        foreach (var t in file.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            var data = new float[t.ElementCount];
            file.ReadFloat32(t.Name, data);
            parts[i % 2].Add((t.Name, t.Shape, data));
            map[t.Name] = $"model-0000{i % 2 + 1}-of-00002.safetensors";
            i++;
        }
        for (int s = 0; s < 2; s++) SafetensorsWriter.Write(Path.Combine(dir, $"model-0000{s + 1}-of-00002.safetensors"), parts[s], null);
        return map;
    }

    [Fact]
    public void MissingDirectory()
    {
        using var dir = new TempDir();
        Fails(dir.File("nope"), "model directory not found", () => T5Checkpoint.Open(dir.File("nope")));
    }

    [Fact]
    public void MissingConfig()
    {
        using var dir = new TempDir();
        Fails(dir.Path, "has no config.json", () => T5Checkpoint.Open(dir.Path));
    }

    [Fact]
    public void PytorchBinOnlyExplainsTheConversion()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), Tiny().ToJson());
        File.WriteAllBytes(dir.File("pytorch_model.bin"), [0x80, 0x02]);
        var e = Fails(dir.Path, "holds only pytorch_model.bin", () => T5Checkpoint.Open(dir.Path));
        Assert.Contains("save_pretrained(d, safe_serialization=True)", e.Message);
    }

    [Fact]
    public void NoWeightsAtAll()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), Tiny().ToJson());
        Fails(dir.Path, "has neither model.safetensors nor model.safetensors.index.json", () => T5Checkpoint.Open(dir.Path));
    }

    [Fact]
    public void MissingTensorIsNamedWithItsFile()
    {
        using var dir = new TempDir();
        RandomT5.Write(dir.Path, Tiny(), seed: 1);
        var gone = T5Names.CrossAttn(1, "v");
        Rewrite(dir.File("model.safetensors"), (name, shape) => name == gone ? null : shape);
        Fails(dir.File("model.safetensors"), $"missing tensor {gone} [12, 16]", () => T5Checkpoint.Open(dir.Path));
    }

    [Fact]
    public void MisShapedTensorIsNamedWithItsFile()
    {
        using var dir = new TempDir();
        RandomT5.Write(dir.Path, Tiny(), seed: 1);
        var bent = T5Names.SelfAttn(T5Stack.Encoder, 1, "o");
        Rewrite(dir.File("model.safetensors"), (name, shape) => name == bent ? [shape[1], shape[0]] : shape);
        Fails(dir.File("model.safetensors"), $"tensor {bent} is [12, 16] but config.json implies [16, 12]", () => T5Checkpoint.Open(dir.Path));
    }

    [Fact]
    public void UntiedConfigNeedsLmHead()
    {
        using var dir = new TempDir();
        RandomT5.Write(dir.Path, Tiny(), seed: 1);
        File.WriteAllText(dir.File("config.json"), (Tiny() with { TieWordEmbeddings = false }).ToJson());
        Fails(dir.File("model.safetensors"), $"missing tensor {T5Names.LmHead}", () => T5Checkpoint.Open(dir.Path));
    }

    [Fact]
    public void IndexPointingAtTheWrongShard()
    {
        using var dir = new TempDir();
        RandomT5.Write(dir.Path, Tiny(), seed: 1);
        File.Move(dir.File("model.safetensors"), dir.File("model-00001-of-00001.safetensors"));
        File.WriteAllText(dir.File("model.safetensors.index.json"), """{"weight_map": {"extra.weight": "model-00001-of-00001.safetensors"}}""");
        Fails(dir.File("model-00001-of-00001.safetensors"), "has no tensor extra.weight", () => T5Checkpoint.Open(dir.Path));
    }

    /// <summary>Rewrites a checkpoint file with each tensor's shape changed (data reshaped in
    /// place) or, where <paramref name="reshape"/> says null, dropped.</summary>
    static void Rewrite(string path, Func<string, long[], long[]?> reshape)
    {
        var tensors = new List<(string, long[], ReadOnlyMemory<float>)>();
        using (var file = SafetensorsFile.Open(path))
        {
            foreach (var t in file.Tensors.Values)
            {
                if (reshape(t.Name, t.Shape) is not { } shape) continue;
                var data = new float[t.ElementCount];
                file.ReadFloat32(t.Name, data);
                tensors.Add((t.Name, shape, data));
            }
        }
        SafetensorsWriter.Write(path, tensors, null);
    }
}
