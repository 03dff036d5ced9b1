using System.Text.Json;
using VkPrompt.Model.Tokenization;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>
/// The assets `vkprompt demo` ships in tools/demo (see its README): our tokenizer must read spiece.model exactly as
/// python sentencepiece does, and the data must suit a short lavapipe run (short inputs, no &lt;unk&gt;, compact labels).
/// </summary>
public sealed class DemoAssetsTests
{
    static readonly string DemoDir = Path.Combine(TestPaths.RepoRoot, "tools", "demo");
    static readonly Lazy<T5Tokenizer> Shared = new(() => T5Tokenizer.Load(DemoDir));
    static T5Tokenizer Tok => Shared.Value;

    /// <summary>The demo trains and evaluates with this input length; make_tokenizer.py enforces the same bound.</summary>
    const int MaxInputTokens = 32;

    record Example(string Input, string Target);

    static readonly Lazy<Example[]> Train = new(() => ReadExamples("train.jsonl"));
    static readonly Lazy<Example[]> Validation = new(() => ReadExamples("validation.jsonl"));

    static Example[] ReadExamples(string file) =>
    [
        .. File.ReadLines(Path.Combine(DemoDir, file)).Where(l => l.Length > 0).Select(line =>
        {
            using var doc = JsonDocument.Parse(line);
            return new Example(doc.RootElement.GetProperty("input").GetString()!, doc.RootElement.GetProperty("target").GetString()!);
        }),
    ];

    /// <summary>tokens.jsonl: ids from python sentencepiece, sp.encode(text) + [1] (written by make_tokenizer.py).</summary>
    public static TheoryData<string, int[]> ExpectedTokens()
    {
        var data = new TheoryData<string, int[]>();
        foreach (string line in File.ReadLines(Path.Combine(DemoDir, "tokens.jsonl")))
        {
            if (line.Length == 0)
                continue;
            using var doc = JsonDocument.Parse(line);
            data.Add(doc.RootElement.GetProperty("text").GetString()!, [.. doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())]);
        }
        return data;
    }

    [Theory, MemberData(nameof(ExpectedTokens))]
    public void EncodesAsPythonSentencePiece(string text, int[] ids) => Assert.Equal(ids, Tok.Encode(text));

    [Fact]
    public void VocabularyIsT5Shaped()
    {
        // 1000 sentencepiece pieces + 100 sentinels, <pad>/</s>/<unk> at 0/1/2 (Load checks those and throws otherwise).
        Assert.Equal(1100, Tok.VocabSize);
        Assert.Equal(1099, Tok.TokenToId("<extra_id_0>"));
    }

    [Fact]
    public void LabelsAreShortAndDistinguishedByTheirFirstPiece()
    {
        string[] labels = [.. Train.Value.Concat(Validation.Value).Select(e => e.Target).Distinct().Order(StringComparer.Ordinal)];
        Assert.Equal(["negative", "positive"], labels);
        var encoded = labels.Select(l => Tok.Encode(l, addEos: false)).ToArray();
        // A short target keeps decoder steps cheap, and distinct first pieces let the first decoding step decide the
        // class (make_tokenizer.py currently makes each label a single piece).
        Assert.All(encoded, ids => Assert.InRange(ids.Length, 1, 3));
        Assert.All(encoded, ids => Assert.DoesNotContain(Tok.UnkId, ids));
        Assert.Equal(labels.Length, encoded.Select(ids => ids[0]).Distinct().Count());
    }

    [Fact]
    public void InputsAreShortAndFreeOfUnk()
    {
        foreach (var e in Train.Value.Concat(Validation.Value))
        {
            int[] ids = Tok.Encode(e.Input);
            Assert.True(ids.Length <= MaxInputTokens, $"{ids.Length} tokens: {e.Input}");
            Assert.False(ids.Contains(Tok.UnkId), $"<unk> in: {e.Input}");
        }
    }

    [Fact]
    public void SplitsAreBalancedSizedAndDisjoint()
    {
        Assert.InRange(Train.Value.Length, 400, 2000);
        Assert.InRange(Validation.Value.Length, 100, 200);
        foreach (var split in new[] { Train.Value, Validation.Value })
        {
            var counts = split.GroupBy(e => e.Target).Select(g => g.Count()).ToArray();
            Assert.Equal(counts.Min(), counts.Max());
        }
        var trainInputs = Train.Value.Select(e => e.Input).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(Train.Value.Length, trainInputs.Count);
        Assert.DoesNotContain(Validation.Value, e => trainInputs.Contains(e.Input));
    }
}
