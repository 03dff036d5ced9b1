using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Model.Backends;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>--attention and VKPROMPT_ATTENTION: every command that computes takes the switch, a
/// bad value is a one-line user error, and fused and unfused attention score the golden cases alike.</summary>
public sealed class AttentionCliTests
{
    static readonly string Model = Path.Combine(TestPaths.Golden, "tiny-v11");
    static readonly string Case = Path.Combine(Model, "cases", "p8");

    static string[] Score(string device, params string[] extra) =>
        ["score", "--model", Model, "--data", Path.Combine(Case, "data.jsonl"), "--prompt", Path.Combine(Case, "prompt0.safetensors"), "--device", device, .. extra];

    static double[] LogProbs(string stdout) =>
        CliRun.Lines(stdout).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("logprob").GetDouble()).ToArray();

    /// <summary>The commands with --device: those that open a backend.</summary>
    static IEnumerable<Command> Computing() => Program.Root().Subcommands.Where(c => c.Options.Any(o => o.Name == "--device"));

    public static TheoryData<string> ComputingCommands() => new(Computing().Select(c => c.Name));

    [Fact]
    public void EveryCommandThatComputesTakesIt()
    {
        var computing = Computing().ToList();
        Assert.Superset(new HashSet<string> { "demo", "train", "eval", "score", "classify", "generate", "grad", "bench" }, computing.Select(c => c.Name).ToHashSet());
        foreach (var command in computing)
        {
            var option = command.Options.SingleOrDefault(o => o.Name == "--attention");
            Assert.True(option is not null, $"{command.Name} has no --attention");
            Assert.Contains("VKPROMPT_ATTENTION", option.Description, StringComparison.Ordinal);
        }
    }

    [Theory, MemberData(nameof(ComputingCommands))]
    public void AnUnknownValueExitsTwoWithOneLine(string command)
    {
        var r = CliRun.Of(command, "--attention", "flash");
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal("", r.Out);
        var line = Assert.Single(CliRun.Lines(r.Err));
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.Contains("'flash'", line, StringComparison.Ordinal);
        Assert.Contains("'unfused'", line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("vulkan")]
    public void FusedAndUnfusedScoreTheGoldenCaseAlike(string device)
    {
        string dev = device == "cpu" ? "cpu" : CliRun.VulkanDevice;
        var fused = LogProbs(CliRun.Of(Score(dev, "--attention", "fused")).Succeeded().Out);
        var unfused = LogProbs(CliRun.Of(Score(dev, "--attention", "unfused")).Succeeded().Out);
        var golden = CliRun.GoldenDoubles(Path.Combine(Case, "scores.json"));
        Assert.Equal(golden.Length, fused.Length);
        Assert.Equal(golden.Length, unfused.Length);
        for (int i = 0; i < golden.Length; i++)
        {
            CliRun.AssertLogLikelihood(golden[i], fused[i], $"fused, example {i}");
            CliRun.AssertLogLikelihood(golden[i], unfused[i], $"unfused, example {i}");
            CliRun.AssertLogLikelihood(unfused[i], fused[i], $"fused against unfused, example {i}");
        }
        // The two paths sum in different orders, so bit-identical scores would mean the switch
        // never reached the backend.
        Assert.NotEqual(unfused, fused);
    }

    /// <summary>An input whose unfused scores would not fit the largest buffer a kernel can bind
    /// (lavapipe's is 128 MiB: about 2,900 tokens at the golden model's 4 heads) scores by default,
    /// auto fusing it, as the CPU reference does; forced unfused, it stops with one line saying
    /// what needs less memory. On a device that binds far more, the input the test needs is too
    /// long for the CPU reference, and the test is skipped.</summary>
    [SkippableFact]
    public void ScoresTooLargeToBindAreFusedByAutoAndRefusedUnfused()
    {
        using var ctx = VkPrompt.Runtime.GpuContext.Create(VkPrompt.Cli.EnvironmentSettings.GpuOptions() with { Device = CliRun.VulkanDevice });
        int heads = JsonDocument.Parse(File.ReadAllText(Path.Combine(Model, "config.json"))).RootElement.GetProperty("num_heads").GetInt32();
        int length = (int)Math.Sqrt(ctx.MaxBindingBytes / (4.0 * heads)) + 1;
        Skip.If(length > 4096, $"{ctx.Capabilities.Name} binds {ctx.MaxBindingBytes} bytes: scores that outgrow it need {length} tokens, too long for the CPU reference");
        using var dir = new VkPrompt.Tests.Model.TempDir();
        var data = dir.File("long.jsonl");
        File.WriteAllText(data, JsonSerializer.Serialize(new { input = string.Join(' ', Enumerable.Repeat("hello world", length)), target = "yes" }) + "\n");
        string[] Long(string device, params string[] extra) =>
            ["score", "--model", Model, "--data", data, "--max-input-length", length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--device", device, .. extra];

        var fused = LogProbs(CliRun.Of(Long(CliRun.VulkanDevice)).Succeeded().Out);
        var reference = LogProbs(CliRun.Of(Long("cpu")).Succeeded().Out);
        CliRun.AssertLogLikelihood(reference[0], Assert.Single(fused), $"{length} tokens, auto attention");

        var unfused = CliRun.Of(Long(CliRun.VulkanDevice, "--attention", "unfused"));
        Assert.Equal(CliConventions.UserError, unfused.ExitCode);
        var line = Assert.Single(CliRun.Lines(unfused.Err), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains("exceeds the largest buffer a kernel can bind", line, StringComparison.Ordinal);
        Assert.EndsWith("the work is too large for this device: a smaller --batch-size, --max-input-length, --attention fused needs less memory", line, StringComparison.Ordinal);
    }

    /// <summary>vkprompt in a process of its own, with VKPROMPT_ATTENTION set there only: the
    /// tests in this process build backends in parallel, and their default reads the variable.</summary>
    static CliRun WithVariable(string value, params string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment[EnvironmentSettings.AttentionVariable] = value;
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(); throw new TimeoutException("vkprompt did not finish in two minutes"); }
        return new CliRun(p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void TheVariableActsAsTheOption()
    {
        var byOption = LogProbs(CliRun.Of(Score("cpu", "--attention", "fused")).Succeeded().Out);
        var byVariable = WithVariable("fused", Score("cpu", "--verbose")).Succeeded();
        Assert.Contains("[vkprompt] attention: fused", byVariable.Err, StringComparison.Ordinal);
        // The cpu device computes the same bits on every run, so the scores are identical.
        Assert.Equal(byOption, LogProbs(byVariable.Out));
    }

    [Fact]
    public void AMalformedVariableExitsTwoWithOneLine()
    {
        var r = WithVariable("flash", Score("cpu"));
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal("", r.Out);
        Assert.Equal("error: VKPROMPT_ATTENTION=flash is not one of auto, fused, unfused", Assert.Single(CliRun.Lines(r.Err)));
    }

    [Fact]
    public void TheOptionOverridesAMalformedVariable()
    {
        var r = WithVariable("flash", Score("cpu", "--attention", "unfused", "--verbose")).Succeeded();
        Assert.Contains("[vkprompt] attention: unfused", r.Err, StringComparison.Ordinal);
        Assert.Equal(LogProbs(CliRun.Of(Score("cpu", "--attention", "unfused")).Succeeded().Out), LogProbs(r.Out));
    }
}
