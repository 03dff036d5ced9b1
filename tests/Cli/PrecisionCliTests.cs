using System.CommandLine;
using System.Text.Json;
using VkPrompt.Cli;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>--precision int8 on every command that takes --precision: accepted, described, and
/// on score giving the int8 golden log-likelihoods on both devices.</summary>
public sealed class PrecisionCliTests
{
    static readonly string Model = Path.Combine(TestPaths.Golden, "tiny-v11");
    static readonly string Int8Case = Path.Combine(Model, "cases-int8", "p8");

    static IEnumerable<Command> All(Command c) => c.Subcommands.SelectMany(s => All(s).Prepend(s));

    static List<(Command Command, Option Option)> WithPrecision() =>
        All(Program.Root()).Select(c => (c, c.Options.SingleOrDefault(o => o.Name == "--precision"))).Where(p => p.Item2 is not null).Select(p => (p.c, p.Item2!)).ToList();

    [Fact]
    public void EveryCommandWithPrecisionAcceptsAndDescribesInt8()
    {
        var commands = WithPrecision();
        Assert.Superset(new HashSet<string> { "train", "eval", "score", "classify", "generate", "grad", "bench", "matmul" }, commands.Select(c => c.Command.Name).ToHashSet());
        foreach (var (command, option) in commands)
        {
            Assert.Contains("int8", option.HelpName, StringComparison.Ordinal);
            Assert.Contains("int8", option.Description, StringComparison.Ordinal);
            // Other errors (required options left out) do not concern the value; fp8 shows the check bites.
            Assert.DoesNotContain(command.Parse(["--precision", "int8"]).Errors, e => e.Message.Contains("'int8'", StringComparison.Ordinal));
            Assert.Contains(command.Parse(["--precision", "fp8"]).Errors, e => e.Message.Contains("'fp8'", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("vulkan")]
    public void ScoreWithInt8WeightsGivesTheInt8GoldenScores(string device)
    {
        var run = CliRun.Of("score", "--model", Model, "--data", Path.Combine(Int8Case, "data.jsonl"), "--prompt", Path.Combine(Int8Case, "prompt0.safetensors"),
                            "--device", device == "cpu" ? "cpu" : CliRun.VulkanDevice, "--precision", "int8").Succeeded();
        var got = CliRun.Lines(run.Out).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("logprob").GetDouble()).ToArray();
        var golden = JsonSerializer.Deserialize<double[]>(File.ReadAllText(Path.Combine(Int8Case, "scores.json")))!;
        Assert.Equal(golden.Length, got.Length);
        for (int i = 0; i < golden.Length; i++)
            Assert.True(Math.Abs(got[i] - golden[i]) <= 1e-3 + 1e-4 * Math.Abs(golden[i]), $"example {i}: {got[i]} vs int8 golden {golden[i]}");
    }
}
