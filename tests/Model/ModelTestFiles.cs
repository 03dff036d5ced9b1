using System.Buffers.Binary;
using System.Text;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>A fresh directory per test, removed afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("vkprompt-model-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>A copy of the directory <paramref name="source"/>, subdirectories and all, as
    /// <paramref name="name"/> in this one (a golden model whose files a test changes).</summary>
    public string CopyOf(string source, string name)
    {
        string copy = File(name);
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string to = System.IO.Path.Combine(copy, System.IO.Path.GetRelativePath(source, file));
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(to)!);
            System.IO.File.Copy(file, to);
        }
        return copy;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>Hand-made files for the malformed-input tests.</summary>
public static class ModelTestFiles
{
    public static string TinyV11 => Path.Combine(TestPaths.Golden, "tiny-v11");
    public static string TinyV10Bf16 => Path.Combine(TestPaths.Golden, "tiny-v10-bf16");
    /// <summary>The ByT5 golden model, kept beside ../shared/golden in golden-variants.</summary>
    public static string TinyByT5 => Path.GetFullPath(Path.Combine(TestPaths.Golden, "..", "golden-variants", "tiny-byt5"));

    /// <summary>One example of each of three padded input lengths from tiny-v11's p8 data: batches
    /// of three shapes, for tests of what is kept per shape.</summary>
    public static List<EncodedExample> OfThreeShapes(T5Tokenizer tok)
    {
        var examples = DataFile.Read(Path.Combine(TinyV11, "cases", "p8", "data.jsonl")).Select(new ExampleEncoder(tok, 512, 128).Encode)
            .GroupBy(e => HostBatch.Round(e.InputIds.Length)).Select(g => g.First()).Take(3).ToList();
        Assert.Equal(3, examples.Count);
        return examples;
    }

    /// <summary>A safetensors file from a literal JSON header and data section, exactly as given.</summary>
    public static void WriteRaw(string path, string header, byte[] data, ulong? headerLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Asserts the failure is a ModelFormatException naming <paramref name="file"/> and
    /// saying <paramref name="says"/>.</summary>
    public static ModelFormatException Fails(string file, string says, Action action)
    {
        var e = Assert.Throws<ModelFormatException>(action);
        Assert.Equal(Path.GetFullPath(file), e.Path);
        Assert.Contains(Path.GetFileName(Path.GetFullPath(file)), e.Message);
        Assert.Contains(says, e.Message);
        return e;
    }

    public static T5Config Tiny(bool gated = false) => new()
    {
        VocabSize = 40,
        DModel = 16,
        DKv = 6,
        NumHeads = 2,
        DFf = 24,
        NumLayers = 2,
        NumDecoderLayers = 3,
        RelativeAttentionNumBuckets = 8,
        RelativeAttentionMaxDistance = 20,
        FeedForwardProj = gated ? T5FeedForward.GatedGelu : T5FeedForward.Relu,
        TieWordEmbeddings = !gated,
    };
}

/// <summary>tiny-v11 loaded on a CPU reference backend of its own, whose memory accounting then
/// counts only what the test allocates.</summary>
internal sealed class TinyV11OnCpu : IDisposable
{
    public T5Checkpoint Checkpoint { get; } = T5Checkpoint.Open(ModelTestFiles.TinyV11);
    public T5Tokenizer Tokenizer { get; } = T5Tokenizer.Load(ModelTestFiles.TinyV11);
    public CpuBackend Backend { get; } = new();
    public T5Weights Weights { get; }
    public int DModel => Checkpoint.Config.DModel;

    public TinyV11OnCpu() => Weights = new T5Weights(Checkpoint, Backend);

    public void Dispose()
    {
        Weights.Dispose();
        Backend.Dispose();
        Checkpoint.Dispose();
    }
}
