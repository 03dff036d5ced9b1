using VkPrompt.Tests.Model;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary><c>--memory-cap</c> (<see cref="Runtime.GpuOptions.MemoryCapBytes"/>): a batch that
/// does not fit under it is a one-line error naming the cap and the need, with the CLI's hint of
/// smaller work; a smaller batch under the same cap prints what no cap does.</summary>
public sealed class MemoryCapCliTests
{
    static readonly string Model = ModelTestFiles.TinyV11;
    static readonly string Data = Path.Combine(Model, "cases", "p8", "data.jsonl");

    static string[] Score(params string[] extra) => ["score", "--model", Model, "--data", Data, "--device", CliRun.VulkanDevice, .. extra];

    [Fact]
    public void ABatchPastTheCapIsRefusedAndASmallerOneRuns()
    {
        // The tiny model's weights take 3.9 MiB: 4 MiB leave no room for a batch of 6.
        var refused = CliRun.Of(Score("--memory-cap", "4MiB", "--batch-size", "6"));
        Assert.Equal(CliConventions.UserError, refused.ExitCode);
        var line = Assert.Single(CliRun.Lines(refused.Err), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.StartsWith("error: scoring batch 6 x ", line, StringComparison.Ordinal);
        Assert.Contains("more than the memory cap (--memory-cap) of 4194304 bytes (4.0 MiB) leaves it", line, StringComparison.Ordinal);
        Assert.Contains("a smaller --batch-size", line, StringComparison.Ordinal);

        var uncapped = CliRun.Of(Score("--batch-size", "1")).Succeeded();
        var capped = CliRun.Of(Score("--memory-cap", "5MiB", "--batch-size", "1")).Succeeded();
        Assert.Equal(6, capped.OutLines.Length);
        Assert.Equal(uncapped.Out, capped.Out);
    }

    [Theory]
    [InlineData("1048576", 1048576L)]
    [InlineData("512MiB", 512L << 20)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("64kib", 64L << 10)]
    [InlineData("2 TiB", 2L << 40)]
    [InlineData("0", null)]
    [InlineData("-1", null)]
    [InlineData("5MB", null)]
    [InlineData("lots", null)]
    public void SizesAreBytesOrBinaryUnits(string text, long? bytes) => Assert.Equal(bytes, CliConventions.ParseSize(text));

    [Fact]
    public void ASizeThatIsNotOneIsAUsageError()
    {
        var r = CliRun.Of(Score("--memory-cap", "5MB"));
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.StartsWith("error: --memory-cap 5MB is not a size: give bytes, or a number with KiB, MiB, GiB or TiB (e.g. 512MiB)", r.Err, StringComparison.Ordinal);
    }
}
