using VkPrompt.Model;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>ByT5 through the CLI: make-model's byt5-small shape and the byte tokenizer behind tokenize.</summary>
public sealed class MakeModelCommandTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public void HelpNamesTheByT5Shape()
    {
        var r = CliRun.Of("make-model", "--help").Succeeded();
        Assert.Contains("byt5-small", r.Out, StringComparison.Ordinal);
        Assert.Contains("ByT5Tokenizer", r.Out, StringComparison.Ordinal);
        Assert.Contains("byt5-small", CliRun.Of("bench", "--help").Succeeded().Out, StringComparison.Ordinal);
    }

    /// <summary>A spiece.model beside a byte tokenizer would never be read: refused before anything is written.</summary>
    [Fact]
    public void ByT5ShapeRefusesASentencePieceModel()
    {
        var output = dir.File("byt5");
        var r = CliRun.Of("make-model", "--shape", "byt5-small", "--output", output, "--tokenizer", Path.Combine(ModelTestFiles.TinyV11, "spiece.model"));
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal("error: --shape byt5-small tokenizes bytes (ByT5Tokenizer); --tokenizer does not apply", Assert.Single(CliRun.Lines(r.Err)));
        Assert.False(Directory.Exists(output));
    }

    [Theory]
    [InlineData("héllo", "[107, 198, 172, 111, 111, 114, 1]")]
    [InlineData("a <extra_id_0> </s>", "[100, 35, 259, 35, 1]")]
    public void TokenizeGivesBytes(string text, string ids) =>
        Assert.Equal(ids, Assert.Single(CliRun.Of("tokenize", "--model", ModelTestFiles.TinyByT5, "--text", text).Succeeded().OutLines));

    /// <summary>Every id the tokenizer can give needs an embedding row: a vocab_size below the tokenizer's is refused.</summary>
    [Fact]
    public void ModelWithFewerRowsThanTokensIsRefused()
    {
        RandomT5.Write(dir.Path, ModelTestFiles.Tiny(gated: true) with { VocabSize = 300, TokenizerClass = "ByT5Tokenizer" }, seed: 1);
        var e = Assert.Throws<ModelFormatException>(() => PromptModel.OpenOnCpu(dir.Path));
        Assert.Equal(dir.File("config.json"), e.Path);
        Assert.Contains("vocab_size is 300, but the tokenizer has 384 tokens", e.Message, StringComparison.Ordinal);
    }
}
