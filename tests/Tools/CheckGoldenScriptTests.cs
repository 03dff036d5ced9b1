using System.Text.Json;
using VkPrompt.Tests.Cli;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Tools;

/// <summary>tools/check-golden.py, the golden check a lent GPU runs before anything is timed
/// (tools/device-bench.sh), on the CLI built beside the tests: it passes the golden cases it is
/// given and fails the one whose reference was moved, naming the check; its lines keep the cases'
/// order while they run side by side; and a process that outlives --timeout fails its case rather
/// than hanging the check.</summary>
public sealed class CheckGoldenScriptTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    /// <summary>A copy of the golden model <paramref name="model"/> in a golden folder of its own,
    /// whose references a test may change.</summary>
    string GoldenCopy(string model)
    {
        dir.CopyOf(Path.Combine(TestPaths.Golden, model), Path.Combine("golden", model));
        return dir.File("golden");
    }

    /// <summary>check-golden.py on <paramref name="golden"/> with the CLI built beside the tests
    /// (its apphost, told where the running dotnet is) on the tests' Vulkan device.</summary>
    static (int Code, string[] Lines, string Err) CheckGolden(string golden, params string[] args)
    {
        var environment = new Dictionary<string, string>();
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host)
            environment["DOTNET_ROOT"] = Path.GetDirectoryName(host)!;
        var (code, stdout, stderr) = BenchScriptTests.Run("python3", environment,
            ["tools/check-golden.py", "--vkprompt", Path.Combine(AppContext.BaseDirectory, "vkprompt"), "--golden", golden,
             "--device", CliRun.VulkanDevice, .. args]);
        return (code, CliRun.Lines(stdout), stderr);
    }

    /// <summary>tiny-v10-bf16's case at fp32 and at int8 weights, two at once, with the first
    /// example's score with the prompt moved by 0.05 in the fp32 references (its bound is 1e-3 +
    /// 1e-4·|golden|, 0.0065 there): that one check fails and says so, the other seven pass, every
    /// check prints in the cases' order, and the exit status is 1.</summary>
    [Fact]
    public void PassesTheGoldenCasesAndFailsTheMovedReference()
    {
        string golden = GoldenCopy("tiny-v10-bf16");
        string scoresPath = Path.Combine(golden, "tiny-v10-bf16", "cases", "p5", "scores.json");
        var scores = CliRun.GoldenDoubles(scoresPath);
        scores[1] += 0.05;
        File.WriteAllText(scoresPath, JsonSerializer.Serialize(scores));

        var (code, lines, err) = CheckGolden(golden, "--precision", "fp32,int8", "--activations", "fp32", "--jobs", "2");

        Assert.True(code == 1, $"exit code {code}; stderr: {err}; stdout: {string.Join('\n', lines)}");
        Assert.Equal(
        [
            "FAIL tiny-v10-bf16/p5 fp32 weights, fp32 activations scores",
            "ok   tiny-v10-bf16/p5 fp32 weights, fp32 activations scores_noprompt",
            "ok   tiny-v10-bf16/p5 fp32 weights, fp32 activations loss",
            "ok   tiny-v10-bf16/p5 fp32 weights, fp32 activations prompt gradient",
            "ok   tiny-v10-bf16/p5 int8 weights, fp32 activations scores",
            "ok   tiny-v10-bf16/p5 int8 weights, fp32 activations scores_noprompt",
            "ok   tiny-v10-bf16/p5 int8 weights, fp32 activations loss",
            "ok   tiny-v10-bf16/p5 int8 weights, fp32 activations prompt gradient",
        ], lines.Where(l => l.StartsWith("ok", StringComparison.Ordinal) || l.StartsWith("FAIL", StringComparison.Ordinal)).Select(l => l[..l.IndexOf(':')]));
        Assert.StartsWith("check-golden: 7 of 8 checks passed in ", lines[^1], StringComparison.Ordinal);
        Assert.EndsWith("(2 runs of a case, 2 at once)", lines[^1], StringComparison.Ordinal);
    }

    /// <summary>With --timeout far below what a process needs to start, the case's run fails,
    /// saying which process did not finish in time, and the check exits 1; --jobs 0 is refused.</summary>
    [Fact]
    public void FailsACaseWhoseProcessOutlivesTheTimeoutAndRefusesNoJobs()
    {
        string golden = GoldenCopy("tiny-v10-bf16");

        var (code, lines, err) = CheckGolden(golden, "--precision", "fp32", "--activations", "fp32", "--timeout", "0.01");

        Assert.True(code == 1, $"exit code {code}; stderr: {err}");
        var run = Assert.Single(lines, l => l.StartsWith("FAIL", StringComparison.Ordinal));
        Assert.StartsWith("FAIL tiny-v10-bf16/p5 fp32 weights, fp32 activations run: ", run, StringComparison.Ordinal);
        Assert.EndsWith(" did not finish in 0.01 s", run, StringComparison.Ordinal);
        Assert.StartsWith("check-golden: 0 of 1 checks passed in ", lines[^1], StringComparison.Ordinal);

        var (refused, _, refusal) = CheckGolden(golden, "--jobs", "0");
        Assert.Equal(2, refused);
        Assert.Contains("--jobs must be at least 1, got 0", refusal, StringComparison.Ordinal);
    }
}
