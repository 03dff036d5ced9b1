using System.Numerics.Tensors;
using System.Text.Json;
using VkPrompt.Model.Safetensors;

namespace VkPrompt.Model;

/// <summary>A Hugging Face T5 directory (config.json with model.safetensors, or
/// model.safetensors.index.json and its shards), checked on <see cref="Open"/> to hold every
/// tensor the graph of its config needs, in the shape that config implies. Weights stay in the
/// mapped files until read.</summary>
public sealed partial class T5Checkpoint : IDisposable
{
    const string SingleFile = "model.safetensors";
    const string IndexFile = "model.safetensors.index.json";

    readonly List<SafetensorsFile> shards;
    readonly Dictionary<string, SafetensorsFile> owner;

    /// <summary>The directory's config.json.</summary>
    public T5Config Config { get; }
    /// <summary>The model directory, as a full path.</summary>
    public string Directory { get; }
    /// <summary>Where the tensors decided what config.json left open, one line each (the host
    /// logs them): a config without feed_forward_proj whose tensors are gated where HF's default
    /// is not, or the other way round.</summary>
    public IReadOnlyList<string> Notices { get; }

    T5Checkpoint(string directory, T5Config config, IReadOnlyList<string> notices, List<SafetensorsFile> shards, Dictionary<string, SafetensorsFile> owner)
    {
        Directory = directory;
        Config = config;
        Notices = notices;
        this.shards = shards;
        this.owner = owner;
    }

    /// <summary>Opens and maps the weights of the T5 directory <paramref name="dir"/>. Throws
    /// <see cref="ModelFormatException"/> naming the file when a tensor is missing, misshapen or of
    /// a dtype other than F32, F16 or BF16.</summary>
    public static T5Checkpoint Open(string dir)
    {
        var directory = Path.GetFullPath(dir);
        if (!System.IO.Directory.Exists(directory))
            throw new ModelFormatException(directory, File.Exists(directory)
                ? "is a file; expected a model directory holding config.json and model.safetensors"
                : "model directory not found");
        var configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
            throw new ModelFormatException(directory, "has no config.json; expected a Hugging Face T5 directory (config.json, model.safetensors, spiece.model)");
        var config = T5Config.Load(configPath);

        var shards = new List<SafetensorsFile>();
        try
        {
            var (owner, listing) = OpenShards(directory, shards);
            var notices = new List<string>();
            config = ResolveFeedForward(config, configPath, owner, notices);
            foreach (var (name, shape) in T5Names.All(config))
            {
                if (!owner.TryGetValue(name, out var file))
                    throw new ModelFormatException(listing, $"missing tensor {name} [{string.Join(", ", shape)}], which config.json implies");
                var info = file.Tensors[name];
                if (!info.Shape.AsSpan().SequenceEqual(shape))
                    throw new ModelFormatException(file.Path, $"tensor {name} is {info.ShapeText} but config.json implies [{string.Join(", ", shape)}]");
                if (info.DType is not ("F32" or "F16" or "BF16"))
                    throw new ModelFormatException(file.Path, $"tensor {name} has dtype {info.DType}; VkPrompt reads F32, F16 and BF16 only");
            }
            // A block past the config's count means a config that does not describe these weights
            // (num_layers too small): running it would drop layers without a word. Other tensors
            // the config does not use (HF's copies of the embedding as encoder.embed_tokens) are let be.
            // Named by the first such block, the encoder's before the decoder's, as a reader counts.
            var past = owner.Keys.Select(name => (Name: name, Match: BlockPastTheConfig().Match(name)))
                .Where(x => x.Match.Success)
                .Select(x => (x.Name, Decoder: x.Match.Groups[1].Value == "decoder", Block: long.Parse(x.Match.Groups[2].ValueSpan, System.Globalization.CultureInfo.InvariantCulture)))
                .Where(x => x.Block >= (x.Decoder ? config.NumDecoderLayers : config.NumLayers))
                .OrderBy(x => x.Decoder).ThenBy(x => x.Block).ThenBy(x => x.Name, StringComparer.Ordinal).FirstOrDefault();
            if (past.Name is not null)
                throw new ModelFormatException(configPath, $"{(past.Decoder ? "num_decoder_layers" : "num_layers")} is {(past.Decoder ? config.NumDecoderLayers : config.NumLayers)}, " +
                                                           $"but the checkpoint holds {past.Name}: the config does not describe these weights");
            return new T5Checkpoint(directory, config, notices, shards, owner);
        }
        catch
        {
            foreach (var s in shards) s.Dispose();
            throw;
        }
    }

    /// <summary>Whether the feed-forward is gated is also written in the tensors (wi_0 and wi_1,
    /// or wi). Some umT5 config.json files omit feed_forward_proj over gated weights: where the
    /// key is absent the tensors win, with a notice; where config.json names it and the tensors
    /// say otherwise, the checkpoint is inconsistent and refused.</summary>
    static T5Config ResolveFeedForward(T5Config config, string configPath, Dictionary<string, SafetensorsFile> owner, List<string> notices)
    {
        string gatedName = T5Names.FeedForward(T5Stack.Encoder, 0, "wi_0"), reluName = T5Names.FeedForward(T5Stack.Encoder, 0, "wi");
        bool gated = owner.ContainsKey(gatedName), relu = owner.ContainsKey(reluName);
        // Both or neither: the tensor check below names what is missing.
        if (gated == relu || gated == config.IsGatedAct) return config;
        string found = gated ? $"gated tensors ({gatedName})" : $"relu tensors ({reluName})";
        if (config.FeedForwardProjGiven)
            throw new ModelFormatException(configPath, $"feed_forward_proj is \"{config.FeedForwardProjName}\" but the checkpoint holds {found}");
        var resolved = config with { FeedForwardProj = gated ? T5FeedForward.GatedGelu : T5FeedForward.Relu };
        notices.Add($"config.json has no feed_forward_proj (default \"{config.FeedForwardProjName}\") but the checkpoint holds {found}: running \"{resolved.FeedForwardProjName}\" as the tensors say");
        return resolved;
    }

    internal TensorInfo Info(string name) => Owner(name).Tensors[name];

    /// <summary>Reads <c>dst.Length</c> elements of <paramref name="name"/> from element
    /// <paramref name="firstElement"/> on, as F32, straight from the mapped shard; every one finite.</summary>
    public void Read(string name, Span<float> dst, long firstElement = 0)
    {
        var file = Owner(name);
        file.ReadFloat32(name, dst, firstElement);
        // One NaN or infinite weight (a damaged file, an overflowed conversion) makes every score
        // it reaches NaN, far from its cause; the check is vectorised, ~10 GB/s on one core.
        if (TensorPrimitives.IsFiniteAll<float>(dst)) return;
        int i = 0;
        while (float.IsFinite(dst[i])) i++;
        var info = file.Tensors[name];
        long at = firstElement + i, cols = info.Shape.Length == 2 ? info.Shape[1] : 0;
        string where = cols > 0 ? $"[{at / cols}, {at % cols}]" : $"[{at}]";
        throw new ModelFormatException(file.Path, $"tensor {name} holds {dst[i]} at {where}; weights must be finite");
    }

    /// <summary>All of tensor <paramref name="name"/> as F32, checked finite like <see cref="Read"/>.</summary>
    public float[] ReadAll(string name)
    {
        var info = Info(name);
        if (info.ElementCount > Array.MaxLength)
            throw new InvalidOperationException($"tensor {name} {info.ShapeText} is too large for one array; read it in parts");
        var values = new float[info.ElementCount];
        Read(name, values);
        return values;
    }

    /// <summary>Unmaps the weight files; tensors already read stay valid.</summary>
    public void Dispose()
    {
        foreach (var s in shards) s.Dispose();
    }

    SafetensorsFile Owner(string name) =>
        owner.TryGetValue(name, out var file) ? file : throw new KeyNotFoundException($"{Directory} has no tensor '{name}'");

    /// <summary>Opens the weight files into <paramref name="shards"/> (so the caller can close them
    /// on failure) and returns which file holds each tensor, plus the file that lists them all,
    /// named when a tensor is missing.</summary>
    static (Dictionary<string, SafetensorsFile>, string) OpenShards(string directory, List<SafetensorsFile> shards)
    {
        var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var single = Path.Combine(directory, SingleFile);
        if (File.Exists(single))
        {
            var file = SafetensorsFile.Open(single);
            shards.Add(file);
            foreach (var name in file.Tensors.Keys) owner[name] = file;
            return (owner, single);
        }

        var index = Path.Combine(directory, IndexFile);
        if (!File.Exists(index)) throw NoSafetensors(directory);
        SafetensorsIndexJson? json;
        try { json = JsonSerializer.Deserialize(File.ReadAllBytes(index), ModelJsonContext.Default.SafetensorsIndexJson); }
        catch (JsonException e) { throw new ModelFormatException(index, $"not a valid index: {JsonMessages.Describe(e)}"); }
        if (json?.WeightMap is not { } weightMap) throw new ModelFormatException(index, "has no weight_map");

        var byFileName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        foreach (var (name, fileName) in weightMap)
        {
            // The JSON reader lets null stand for a string; a tensor without a file is a damaged index.
            if (fileName is null) throw new ModelFormatException(index, $"tensor {name} has no shard file name (null in weight_map)");
            if (!byFileName.TryGetValue(fileName, out var shard))
            {
                // HF writes bare file names; anything with a directory part could reach outside the model.
                if (Path.GetFileName(fileName) != fileName)
                    throw new ModelFormatException(index, $"shard '{fileName}' of tensor {name} is not a file name in the model directory");
                shard = SafetensorsFile.Open(Path.Combine(directory, fileName));
                shards.Add(shard);
                byFileName.Add(fileName, shard);
            }
            if (!shard.Tensors.ContainsKey(name))
                throw new ModelFormatException(shard.Path, $"has no tensor {name}, although {IndexFile} places it there");
            owner[name] = shard;
        }
        return (owner, index);
    }

    static ModelFormatException NoSafetensors(string directory)
    {
        bool pytorch = File.Exists(Path.Combine(directory, "pytorch_model.bin")) || File.Exists(Path.Combine(directory, "pytorch_model.bin.index.json"));
        if (!pytorch)
            return new ModelFormatException(directory, $"has neither {SingleFile} nor {IndexFile}");
        return new ModelFormatException(directory,
            "holds only pytorch_model.bin; VkPrompt reads safetensors (a pickle can run code when loaded). Convert it once with:\n" +
            "  python -c \"from transformers import T5ForConditionalGeneration as M; import sys; d = sys.argv[1]; " +
            "M.from_pretrained(d).save_pretrained(d, safe_serialization=True)\" \"" + directory + "\"");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^(encoder|decoder)\.block\.(\d{1,9})\.")]
    private static partial System.Text.RegularExpressions.Regex BlockPastTheConfig();
}
