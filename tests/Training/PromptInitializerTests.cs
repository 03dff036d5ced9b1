using System.Text;
using VkPrompt.Model;
using VkPrompt.Model.Tokenization;
using VkPrompt.Training;
using Xunit;
using static VkPrompt.Tests.Model.ModelTestFiles;

namespace VkPrompt.Tests.Training;

/// <summary>vocab and class initialisation read the embedding rows the vocabulary calls for: the first 5000
/// SentencePiece ids, and for ByT5 the 256 byte ids.</summary>
public sealed class PromptInitializerTests
{
    /// <summary>The id of each prompt row, found by comparing it with every embedding row.</summary>
    static int[] RowIds(float[] prompt, T5Checkpoint ckpt)
    {
        int d = ckpt.Config.DModel;
        var shared = ckpt.ReadAll(T5Names.Shared);
        return [.. Enumerable.Range(0, prompt.Length / d).Select(r =>
            Enumerable.Range(0, ckpt.Config.VocabSize).Single(id => shared.AsSpan(id * d, d).SequenceEqual(prompt.AsSpan(r * d, d))))];
    }

    [Fact]
    public void VocabInitOfBytesDrawsByteIdsOnly()
    {
        using var ckpt = T5Checkpoint.Open(TinyByT5);
        var tok = T5Tokenizer.Load(TinyByT5);
        // 300 rows: all 256 bytes once, then again; never pad, eos, unk or a sentinel.
        var ids = RowIds(PromptInitializer.Create("vocab", 300, ckpt, tok, null, seed: 3), ckpt);
        Assert.All(ids, id => Assert.InRange(id, 3, 258));
        Assert.Equal(256, ids[..256].Distinct().Count());
        Assert.Equal(ids[..44], ids[256..]);
    }

    [Fact]
    public void VocabInitOfSentencePieceDrawsTheFirstIds()
    {
        using var ckpt = T5Checkpoint.Open(TinyV11);
        var tok = T5Tokenizer.Load(TinyV11);
        var ids = RowIds(PromptInitializer.Create("vocab", 20, ckpt, tok, null, seed: 3), ckpt);
        Assert.Equal(20, ids.Distinct().Count());
        Assert.Contains(ids, id => id >= tok.VocabSize - 100);  // the whole 904-row table is within the first 5000
    }

    /// <summary>An embedding of 6000 rows (tiny-v11's tokenizer, a random model): 300 rows drawn
    /// from the first 5000 ids only, not from the whole table nor from the tokenizer's 904 pieces.</summary>
    [Fact]
    public void VocabInitStaysWithinTheFirst5000Ids()
    {
        using var dir = new VkPrompt.Tests.Model.TempDir();
        RandomT5.Write(dir.Path, new T5Config { VocabSize = 6000, DModel = 8, DKv = 4, NumHeads = 2, DFf = 16, NumLayers = 1 }, seed: 7,
                       spieceModelPath: Path.Combine(TinyV11, "spiece.model"));
        using var ckpt = T5Checkpoint.Open(dir.Path);
        var tok = T5Tokenizer.Load(dir.Path);
        var ids = RowIds(PromptInitializer.Create("vocab", 300, ckpt, tok, null, seed: 3), ckpt);
        Assert.Equal(300, ids.Distinct().Count());
        Assert.All(ids, id => Assert.InRange(id, 0, 4999));
        Assert.Contains(ids, id => id >= tok.VocabSize);
    }

    [Fact]
    public void ClassInitOfBytesAveragesTheLabelsBytes()
    {
        using var ckpt = T5Checkpoint.Open(TinyByT5);
        var tok = T5Tokenizer.Load(TinyByT5);
        int d = ckpt.Config.DModel;
        var prompt = PromptInitializer.Create("class", 3, ckpt, tok, ["né", "oui"], seed: 0);
        var shared = ckpt.ReadAll(T5Names.Shared);
        foreach (var (label, row) in new[] { ("né", 0), ("oui", 1) })
        {
            int[] bytes = [.. Encoding.UTF8.GetBytes(label).Select(b => b + 3)];
            for (int j = 0; j < d; j++)
            {
                float sum = 0;
                foreach (int id in bytes) sum += shared[id * d + j] / bytes.Length;
                Assert.Equal(sum, prompt[row * d + j], 6);
            }
        }
        Assert.InRange(RowIds(prompt[(2 * d)..], ckpt)[0], 3, 258);
    }
}
