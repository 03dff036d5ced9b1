using System.Text;
using System.Text.Json;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;

namespace VkPrompt.Model;

/// <summary>Writes a T5 directory with random weights: for benchmarks and tests at real model
/// sizes without downloading a checkpoint.</summary>
public static class RandomT5
{
    /// <summary>Weights are Gaussian with the scales of transformers' T5PreTrainedModel._init_weights
    /// (initializer_factor 1), so activations have realistic magnitudes. The same seed gives the
    /// same bytes. Tensors are generated and written one at a time into one reused buffer, so
    /// memory stays at the largest tensor whatever the model size. A config whose tokenizer_class is
    /// ByT5's gets a tokenizer_config.json naming it too (HF's AutoTokenizer reads that file first),
    /// so the byte tokenizer needs no file of its own.</summary>
    public static void Write(string dir, T5Config cfg, int seed, string? spieceModelPath = null)
    {
        if (cfg.Problem() is { } problem) throw new ArgumentException($"invalid config: {problem}", nameof(cfg));
        bool bytes = cfg.TokenizerClass == T5Config.ByteTokenizerClass;
        if (bytes && spieceModelPath is not null)
            throw new ArgumentException($"the config's tokenizer is {T5Config.ByteTokenizerClass} (bytes); a SentencePiece model does not apply", nameof(spieceModelPath));
        if (spieceModelPath is not null)
        {
            // Read as the model's loader will read it, before anything is written: a file that is
            // not a SentencePiece model, or one with more tokens than the config has embedding
            // rows, would make a checkpoint nothing can open.
            int tokens = SentencePieceModel.Load(spieceModelPath).Pieces.Count + T5Tokenizer.ExtraIdCount;
            if (tokens > cfg.VocabSize)
                throw new ModelFormatException(spieceModelPath, $"the tokenizer has {tokens} tokens, more than the {cfg.VocabSize} embedding rows (vocab_size) of the model");
        }
        Directory.CreateDirectory(dir);

        var layout = T5Names.All(cfg);
        var buffer = new float[layout.Max(t => TensorInfo.Product(t.Shape))];
        var rng = new Random(seed);
        // transformers refuses a safetensors checkpoint whose metadata lacks a known "format".
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), layout, i =>
        {
            var values = buffer.AsSpan(0, (int)TensorInfo.Product(layout[i].Shape));
            if (layout[i].Name.EndsWith("layer_norm.weight", StringComparison.Ordinal)) values.Fill(1f);
            else Gaussian(rng, values, Std(cfg, layout[i].Name));
            return buffer.AsMemory(0, values.Length);
        }, metadata);

        using (var config = AtomicFile.Create(Path.Combine(dir, "config.json")))
        {
            config.Stream.Write(Encoding.UTF8.GetBytes(cfg.ToJson()));
            config.Commit();
        }
        if (bytes)
        {
            using var tokenizerConfig = AtomicFile.Create(Path.Combine(dir, "tokenizer_config.json"));
            var json = new TokenizerConfigJson { TokenizerClass = T5Config.ByteTokenizerClass, ExtraIds = T5Tokenizer.ByteExtraIdCount };
            tokenizerConfig.Stream.Write(JsonSerializer.SerializeToUtf8Bytes(json, ModelJsonContext.Default.TokenizerConfigJson));
            tokenizerConfig.Commit();
        }
        if (spieceModelPath is not null)
        {
            using var spiece = AtomicFile.Create(Path.Combine(dir, "spiece.model"));
            using (var source = File.OpenRead(spieceModelPath)) source.CopyTo(spiece.Stream);
            spiece.Commit();
        }
    }

    /// <summary>The demo model's configuration (<c>vkprompt demo</c>'s and the sample host's,
    /// tools/VkPrompt.HostSample): t5-base's layout shrunk to d_model 128, 2 + 2 layers, 4 heads
    /// of 32, d_ff 256, no dropout, with <paramref name="vocabSize"/> embedding rows (the bundled
    /// tokenizer's). Changing it changes the demo's model: bump DemoCommand's ModelVersion.</summary>
    public static T5Config DemoConfig(int vocabSize) => T5Config.Named("t5-base") with
    {
        VocabSize = vocabSize, DModel = 128, DKv = 32, NumHeads = 4, DFf = 256, NumLayers = 2, NumDecoderLayers = 2, DropoutRate = 0,
    };

    /// <summary>Standard deviation of each weight, keyed on the HF name suffix (layer norms, set to
    /// 1, never get here).</summary>
    static double Std(T5Config cfg, string name)
    {
        double d = cfg.DModel;
        if (name is T5Names.Shared or T5Names.LmHead) return 1;
        if (name.EndsWith(".relative_attention_bias.weight", StringComparison.Ordinal)) return Math.Pow(d, -0.5);
        if (name.EndsWith(".q.weight", StringComparison.Ordinal)) return Math.Pow(d * cfg.DKv, -0.5);
        if (name.EndsWith(".k.weight", StringComparison.Ordinal) || name.EndsWith(".v.weight", StringComparison.Ordinal)) return Math.Pow(d, -0.5);
        if (name.EndsWith(".o.weight", StringComparison.Ordinal)) return Math.Pow(cfg.InnerDim, -0.5);
        if (name.EndsWith(".wo.weight", StringComparison.Ordinal)) return Math.Pow(cfg.DFf, -0.5);
        if (name.EndsWith(".wi.weight", StringComparison.Ordinal) || name.EndsWith(".wi_0.weight", StringComparison.Ordinal) || name.EndsWith(".wi_1.weight", StringComparison.Ordinal))
            return Math.Pow(d, -0.5);
        throw new InvalidOperationException($"no initializer for {name}");
    }

    /// <summary>Box-Muller: two normal samples from two uniform ones.</summary>
    static void Gaussian(Random rng, Span<float> dst, double std)
    {
        for (int i = 0; i < dst.Length; i += 2)
        {
            // 1 - u lies in (0, 1], keeping the logarithm finite.
            double radius = std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble()));
            var (sin, cos) = Math.SinCos(2 * Math.PI * rng.NextDouble());
            dst[i] = (float)(radius * cos);
            if (i + 1 < dst.Length) dst[i + 1] = (float)(radius * sin);
        }
    }
}
