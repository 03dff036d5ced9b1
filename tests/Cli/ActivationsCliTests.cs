using System.CommandLine;
using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>--activations on every command that builds T5 passes: accepted and described, and
/// taking effect without --verbose (a run that ignored it would score as fp32 does).</summary>
public sealed class ActivationsCliTests
{
    static readonly string Model = Path.Combine(TestPaths.Golden, "tiny-v11");
    static readonly string Case = Path.Combine(Model, "cases", "p8");

    static IEnumerable<Command> All(Command c) => c.Subcommands.SelectMany(s => All(s).Prepend(s));

    [Fact]
    public void EveryCommandThatRunsTheModelTakesActivations()
    {
        var commands = All(Program.Root()).Where(c => c.Options.Any(o => o.Name == "--activations")).ToList();
        Assert.Equal(new HashSet<string> { "train", "eval", "score", "classify", "generate", "grad", "bench", "matmul", "plan" }, commands.Select(c => c.Name).ToHashSet());
        foreach (var command in commands)
        {
            var option = command.Options.Single(o => o.Name == "--activations");
            Assert.Contains("bf16", option.Description, StringComparison.Ordinal);
            Assert.DoesNotContain(command.Parse(["--activations", "fp16"]).Errors, e => e.Message.Contains("'fp16'", StringComparison.Ordinal));
            Assert.Contains(command.Parse(["--activations", "fp8"]).Errors, e => e.Message.Contains("'fp8'", StringComparison.Ordinal));
        }
    }

    double[] Score(string device, string activations)
    {
        var run = CliRun.Of("score", "--model", Model, "--data", Path.Combine(Case, "data.jsonl"), "--prompt", Path.Combine(Case, "prompt0.safetensors"),
                            "--device", device == "cpu" ? "cpu" : CliRun.VulkanDevice, "--activations", activations).Succeeded();
        return CliRun.Lines(run.Out).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("logprob").GetDouble()).ToArray();
    }

    /// <summary>score with bf16 and fp16 activations: within their golden bounds
    /// (docs/numerics.md) and not the fp32 scores, which a setting that never reached the
    /// backends would give.</summary>
    [Theory]
    [InlineData("cpu", "bf16")]
    [InlineData("cpu", "fp16")]
    [InlineData("vulkan", "bf16")]
    [InlineData("vulkan", "fp16")]
    public void ScoreTakesTheActivationsAsked(string device, string activations)
    {
        var golden = JsonSerializer.Deserialize<double[]>(File.ReadAllText(Path.Combine(Case, "scores.json")))!;
        var fp32 = Score(device, "fp32");
        var got = Score(device, activations);
        double u = ActivationPrecisions.Parse(activations)!.Value.UnitRoundoff();
        Assert.Equal(golden.Length, got.Length);
        for (int i = 0; i < golden.Length; i++)
        {
            Assert.True(Math.Abs(fp32[i] - golden[i]) <= 1e-3 + 1e-4 * Math.Abs(golden[i]), $"fp32 example {i}: {fp32[i]} vs golden {golden[i]}");
            Assert.True(Math.Abs(got[i] - golden[i]) <= 1e-3 + u / 2 * Math.Abs(golden[i]), $"{activations} example {i}: {got[i]} vs golden {golden[i]}");
        }
        Assert.True(got.Zip(fp32).Any(p => Math.Abs(p.First - p.Second) > 1e-5), $"{activations} activations scored exactly as fp32: the setting did not reach the model");
    }
}
