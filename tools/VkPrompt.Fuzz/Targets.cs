using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Fuzz;

/// <summary>How an input is structured, which picks the mutations that understand it.</summary>
internal enum Format { Binary, Json, JsonLines, Protobuf, Safetensors }

/// <summary>One parser under fuzzing. The input is written as <see cref="FileName"/> into a scratch
/// directory that <see cref="Prepare"/> filled once with the files the parser needs beside it (a
/// config.json beside fuzzed weights, shards beside a fuzzed index); <see cref="Parse"/> then reads
/// it the way the commands do, and goes on to use what it read (reads every tensor, encodes text
/// with a loaded tokenizer), so an input that loads but breaks its first user is found too.</summary>
internal sealed record Target(
    string Name,
    string FileName,
    Format Format,
    string What,
    Func<Fixtures, IReadOnlyList<byte[]>> MakeSeeds,
    Action<Fixtures, string> Parse,
    Action<Fixtures, string>? Prepare = null)
{
    /// <summary>Every target, by the name <c>tools/fuzz.sh</c> and tests/FuzzCorpus use.</summary>
    public static IReadOnlyList<Target> All { get; } =
    [
        new("safetensors", "model.safetensors", Format.Safetensors,
            "safetensors header and data (SafetensorsFile, T5Checkpoint, PromptFile)",
            fx => [File.ReadAllBytes(fx.Model("model.safetensors")), .. fx.GoldenPrompts()],
            ParseSafetensors, Prepare: (fx, dir) => fx.Place(dir, "config.json")),
        new("index", "model.safetensors.index.json", Format.Json,
            "sharded safetensors index (T5Checkpoint)",
            fx => [fx.ShardIndex()],
            (fx, path) => ReadModel(Path.GetDirectoryName(path)!),
            Prepare: (fx, dir) => fx.PlaceShards(dir)),
        new("config", "config.json", Format.Json,
            "config.json (T5Config through T5Checkpoint)",
            fx => fx.Configs(),
            (fx, path) => ReadModel(Path.GetDirectoryName(path)!),
            Prepare: (fx, dir) => fx.Place(dir, "model.safetensors")),
        new("spiece", "spiece.model", Format.Protobuf,
            "spiece.model (SentencePieceModel, T5Tokenizer)",
            fx => [File.ReadAllBytes(fx.Model("spiece.model")), File.ReadAllBytes(Path.Combine(fx.RepoRoot, "tools", "demo", "spiece.model"))],
            (fx, path) => UseTokenizer(T5Tokenizer.Load(Path.GetDirectoryName(path)!))),
        new("tokenizer-json", "tokenizer.json", Format.Json,
            "tokenizer.json (T5Tokenizer)",
            fx => [Seeds.TokenizerJson(fx.SentencePiece)],
            (fx, path) => UseTokenizer(T5Tokenizer.Load(Path.GetDirectoryName(path)!))),
        new("npy", "prompt.npy", Format.Binary,
            ".npy prompt (NpyFile, PromptFile)",
            fx => fx.NpySeeds(),
            ParseNpy),
        new("peft", "adapter_config.json", Format.Json,
            "PEFT adapter_config.json beside its adapter_model.safetensors (PromptFile)",
            fx => [fx.AdapterConfig()],
            (fx, path) => PromptFile.Load(Path.GetDirectoryName(path)!, fx.DModel, out _),
            Prepare: (fx, dir) => fx.PlaceAdapter(dir)),
        new("checkpoint", TrainingDirectory.CheckpointFile, Format.Safetensors,
            "training checkpoint metadata and tensors (TrainingDirectory)",
            fx => [Seeds.Checkpoint(fx)],
            ParseCheckpoint),
        new("data", "data.jsonl", Format.JsonLines,
            "JSONL data lines (DataFile), then tokenized",
            fx => fx.DataSeeds(),
            ParseData),
        new("superglue", "train.jsonl", Format.JsonLines,
            "SuperGLUE lines of every task (SuperGlue), then tokenized",
            fx => [.. Seeds.SuperGlueLines()],
            ParseSuperGlue),
    ];

    public static Target? Find(string name) => All.FirstOrDefault(t => t.Name == name);

    /// <summary>The model directory as every command opens it: the checkpoint, then every tensor
    /// the config implies read as the backends read them.</summary>
    static void ReadModel(string dir)
    {
        using var model = T5Checkpoint.Open(dir);
        foreach (var (name, _) in T5Names.All(model.Config)) model.ReadAll(name);
    }

    static void ParseSafetensors(Fixtures fx, string path)
    {
        using (var file = SafetensorsFile.Open(path))
        {
            foreach (var t in file.Tensors.Values)
            {
                // Sizes the header claims are checked against the file on Open, so a readable
                // tensor here is at most the (small) fuzzed file's size.
                if (t.DType is "F32" or "F16" or "BF16") file.ReadFloat32(t.Name, new float[t.ElementCount]);
            }
            if (file.Tensors.TryGetValue(PromptFile.TensorName, out var prompt) && prompt.Shape is [_, var cols])
                PromptFile.Load(path, (int)Math.Clamp(cols, 1, 1 << 20), out _);
        }
        ReadModel(Path.GetDirectoryName(path)!);
    }

    static void ParseNpy(Fixtures fx, string path)
    {
        var (_, shape) = NpyFile.Read(path);
        if (shape is [_, var cols]) PromptFile.Load(path, (int)Math.Clamp(cols, 1, 1 << 20), out _);
    }

    static void ParseCheckpoint(Fixtures fx, string path)
    {
        using var run = new TrainingDirectory(Path.GetDirectoryName(path)!);
        run.CheckpointPromptLength();
        run.ReadCheckpoint(Seeds.CheckpointDModel, Seeds.CheckpointPromptLength, WeightPrecision.Fp32, new AdafactorSettings(), Seeds.CheckpointSeed);
    }

    static void ParseData(Fixtures fx, string path)
    {
        // Scoring and training need targets, decoding does not: both readings must hold.
        Oracle.AllowUserError(path, () => Tokenize(fx.Tokenizer, DataFile.Read(path)));
        Oracle.AllowUserError(path, () => Tokenize(fx.Tokenizer, DataFile.Read(path, requireTargets: false)));
    }

    static void ParseSuperGlue(Fixtures fx, string path)
    {
        foreach (var task in SuperGlue.Tasks.Values)
        {
            Oracle.AllowUserError(path, () => Tokenize(fx.Tokenizer, SuperGlue.Read(path, task)));
            Oracle.AllowUserError(path, () => Tokenize(fx.Tokenizer, SuperGlue.Read(path, task, requireLabels: false)));
        }
    }

    /// <summary>What the commands do with an example next: encode it, cut to T5's lengths.</summary>
    static void Tokenize(T5Tokenizer tokenizer, List<Example> examples)
    {
        foreach (var e in examples)
        {
            tokenizer.Encode(e.Input, 512, out _);
            if (e.Target is not null) tokenizer.Encode(e.Target, 128, out _);
        }
    }

    /// <summary>A loaded tokenizer's first users: encoding (whole and cut) and decoding texts with
    /// special tokens, sentinels, whitespace runs and characters outside the vocabulary.</summary>
    static void UseTokenizer(T5Tokenizer tokenizer)
    {
        foreach (var text in Seeds.Texts)
        {
            var ids = tokenizer.Encode(text);
            tokenizer.Encode(text, 4, out _);
            tokenizer.Decode(ids);
            tokenizer.Decode(ids, skipSpecial: false);
        }
        tokenizer.Decode([0, 1, 2, tokenizer.VocabSize - 1], skipSpecial: false);
    }
}

/// <summary>The real files the seeds and the scratch directories are made of: the golden tiny
/// models under ../shared/golden and the demo's files.</summary>
internal sealed class Fixtures(string repoRoot, string golden)
{
    public string RepoRoot { get; } = repoRoot;

    /// <summary>The model every fixture is made of: the golden v1.0 model (bf16, small).</summary>
    public string ModelDir { get; } = Path.Combine(golden, "tiny-v10-bf16");

    public string Model(string file) => Path.Combine(ModelDir, file);

    public int DModel => 64;

    T5Tokenizer? tokenizer;
    SentencePieceModel? spm;

    public T5Tokenizer Tokenizer => tokenizer ??= T5Tokenizer.Load(ModelDir);

    public SentencePieceModel SentencePiece => spm ??= SentencePieceModel.Load(Model("spiece.model"));

    /// <summary>The golden prompt files (PEFT's prompt_embeddings tensor) of every case.</summary>
    public IEnumerable<byte[]> GoldenPrompts() =>
        Directory.GetFiles(Path.GetDirectoryName(ModelDir)!, "prompt0.safetensors", SearchOption.AllDirectories)
            .Where(f => new FileInfo(f).Length < 8192).Select(File.ReadAllBytes);

    /// <summary>config.json of every golden model: v1.0, v1.1 and the variants (UL2, umT5, ByT5).</summary>
    public IReadOnlyList<byte[]> Configs()
    {
        var variants = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(ModelDir)!)!, "golden-variants");
        return [.. Directory.GetDirectories(Path.GetDirectoryName(ModelDir)!).Concat(Directory.Exists(variants) ? Directory.GetDirectories(variants) : [])
            .Select(d => Path.Combine(d, "config.json")).Where(File.Exists).Select(File.ReadAllBytes)];
    }

    /// <summary>Links <paramref name="file"/> of the fixture model into <paramref name="dir"/>.</summary>
    public void Place(string dir, string file) => File.CreateSymbolicLink(Path.Combine(dir, file), Model(file));

    /// <summary>The fixture model's tensors split over two shards, and config.json, in <paramref name="dir"/>.</summary>
    public void PlaceShards(string dir)
    {
        Place(dir, "config.json");
        using var model = SafetensorsFile.Open(Model("model.safetensors"));
        var names = model.Tensors.Keys.Order(StringComparer.Ordinal).ToList();
        for (int shard = 0; shard < 2; shard++)
        {
            var tensors = names.Where((_, i) => i % 2 == shard).Select(n =>
            {
                var t = model.Tensors[n];
                var data = new float[t.ElementCount];
                model.ReadFloat32(n, data);
                return (n, t.Shape, (ReadOnlyMemory<float>)data);
            }).ToList();
            SafetensorsWriter.Write(Path.Combine(dir, ShardName(shard)), tensors);
        }
    }

    static string ShardName(int shard) => $"model-{shard + 1:00000}-of-00002.safetensors";

    /// <summary>The index HF writes for <see cref="PlaceShards"/>' shards.</summary>
    public byte[] ShardIndex()
    {
        using var model = SafetensorsFile.Open(Model("model.safetensors"));
        var names = model.Tensors.Keys.Order(StringComparer.Ordinal).ToList();
        var map = new System.Text.Json.Nodes.JsonObject();
        for (int i = 0; i < names.Count; i++) map[names[i]] = ShardName(i % 2);
        var index = new System.Text.Json.Nodes.JsonObject
        {
            ["metadata"] = new System.Text.Json.Nodes.JsonObject { ["total_size"] = 4 * model.Tensors.Values.Sum(t => t.ElementCount) },
            ["weight_map"] = map,
        };
        return System.Text.Encoding.UTF8.GetBytes(index.ToJsonString(new() { WriteIndented = true }));
    }

    float[] GoldenPrompt()
    {
        using var f = SafetensorsFile.Open(Path.Combine(ModelDir, "cases", "p5", "prompt0.safetensors"));
        var data = new float[f.Tensors[PromptFile.TensorName].ElementCount];
        f.ReadFloat32(PromptFile.TensorName, data);
        return data;
    }

    /// <summary>The adapter VkPrompt saves for the golden prompt, written into <paramref name="dir"/>.</summary>
    public void PlaceAdapter(string dir) =>
        Adapter.Save(dir, GoldenPrompt(), T5Config.Load(Model("config.json")), ModelDir, "vocab");

    public byte[] AdapterConfig()
    {
        var dir = Directory.CreateTempSubdirectory("vkprompt-fuzz-seed-").FullName;
        try
        {
            PlaceAdapter(dir);
            return File.ReadAllBytes(Path.Combine(dir, Adapter.ConfigFile));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>The golden prompt as VkPrompt's .npy, and the same as NumPy's version 2.0 and as a
    /// row vector, so the version and shape branches are all one edit away.</summary>
    public IReadOnlyList<byte[]> NpySeeds()
    {
        var dir = Directory.CreateTempSubdirectory("vkprompt-fuzz-seed-").FullName;
        try
        {
            var prompt = GoldenPrompt();
            var path = Path.Combine(dir, "p.npy");
            NpyFile.Write(path, prompt, [prompt.Length / DModel, DModel]);
            var v1 = File.ReadAllBytes(path);
            NpyFile.Write(path, prompt.AsSpan(0, 3), [3]);
            var vector = File.ReadAllBytes(path);
            // Version 2.0: the same header behind a 4-byte length.
            int headerLength = BitConverter.ToUInt16(v1, 8);
            var v2 = new byte[v1.Length + 2];
            v1.AsSpan(0, 8).CopyTo(v2);
            v2[6] = 2;
            BitConverter.TryWriteBytes(v2.AsSpan(8), (uint)headerLength);
            v1.AsSpan(10).CopyTo(v2.AsSpan(12));
            return [v1, v2, vector];
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>The golden data files and the demo's first lines.</summary>
    public IReadOnlyList<byte[]> DataSeeds()
    {
        var demo = File.ReadLines(Path.Combine(RepoRoot, "tools", "demo", "train.jsonl")).Take(20);
        return [File.ReadAllBytes(Path.Combine(ModelDir, "cases", "p5", "data.jsonl")),
                System.Text.Encoding.UTF8.GetBytes(string.Join("\n", demo) + "\n")];
    }

}
