using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Tests.Cli;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Native;

/// <summary>
/// libvkprompt built once per test run (tools/build-native.sh into a temporary directory),
/// tests/Native/host.c compiled against its header and library with cc, and the host run on the
/// golden case tiny-v11/p8 with the validation layer in its own instance. The tests check what it
/// printed and wrote. Without a C compiler the tests are skipped, saying so.
/// </summary>
public sealed class NativeHost : IDisposable
{
    public const string Model = "tiny-v11", Case = "p8";
    readonly string root = Directory.CreateTempSubdirectory("vkprompt-native-").FullName;

    /// <summary>Why the tests cannot run here; null where they ran.</summary>
    public string? SkipReason { get; }
    public string Out => Path.Combine(root, "run");
    public string CaseDir => Path.Combine(TestPaths.Golden, Model, "cases", Case);
    public int ExitCode { get; }
    public IReadOnlyList<string> Lines { get; } = [];
    public string Errors { get; } = "";

    public NativeHost()
    {
        if (Run("sh", "-c", "command -v cc").Code != 0)
        {
            SkipReason = "no C compiler (cc) here: install clang (tools/install-deps.sh) to test libvkprompt";
            return;
        }
        string lib = Path.Combine(root, "lib");
        var built = Run(Path.Combine(TestPaths.RepoRoot, "tools", "build-native.sh"), lib);
        if (built.Code != 0) throw new InvalidOperationException($"tools/build-native.sh failed ({built.Code}):\n{built.Stdout}\n{built.Stderr}");
        string host = Path.Combine(root, "host");
        var compiled = Run("cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", host, Path.Combine(TestPaths.RepoRoot, "tests", "Native", "host.c"),
                           "-I" + Path.Combine(lib, "include"), "-L" + lib, "-lvkprompt", "-lvulkan", "-lpthread", "-Wl,-rpath," + lib);
        if (compiled.Code != 0) throw new InvalidOperationException($"cc failed ({compiled.Code}):\n{compiled.Stderr}");
        Directory.CreateDirectory(Out);
        var ran = Run(host, Path.Combine(TestPaths.Golden, Model), CaseDir, Out);
        (ExitCode, Lines, Errors) = (ran.Code, ran.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries), ran.Stderr);
    }

    static (int Code, string Stdout, string Stderr) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10))) { p.Kill(entireProcessTree: true); throw new TimeoutException($"{file} ran over 10 minutes"); }
        return (p.ExitCode, stdout, stderr.Result);
    }

    /// <summary>The words after <paramref name="tag"/> of every line it starts.</summary>
    public List<string[]> Tagged(string tag) =>
        Lines.Where(l => l.StartsWith(tag + " ", StringComparison.Ordinal)).Select(l => l[(tag.Length + 1)..].Split(' ', 3)).ToList();

    public void Dispose() => Directory.Delete(root, recursive: true);
}

public sealed class NativeHostTests(NativeHost host) : IClassFixture<NativeHost>
{
    void Ran()
    {
        Skip.If(host.SkipReason is not null, host.SkipReason);
        Assert.True(host.ExitCode == 0, $"the C host exited {host.ExitCode}:\n{string.Join('\n', host.Lines)}\n{host.Errors}");
    }

    [SkippableFact]
    public void HostSeesNoValidationMessage()
    {
        Ran();
        Assert.Equal("0", Assert.Single(host.Tagged("validation_messages"))[0]);
    }

    [SkippableFact]
    public void ScoresAreTheGoldenOnesAsVkpromptScorePrintsThem()
    {
        Ran();
        var golden = GoldenCase.Doubles(Path.Combine(host.CaseDir, "scores.json"));
        var lines = File.ReadAllLines(Path.Combine(host.Out, "scores.jsonl"));
        Assert.Equal(golden.Length, lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            var line = JsonDocument.Parse(lines[i]).RootElement;
            Assert.Equal(["index", "logprob", "tokens"], line.EnumerateObject().Select(p => p.Name));
            Assert.Equal(i, line.GetProperty("index").GetInt32());
            CliRun.AssertLogLikelihood(golden[i], line.GetProperty("logprob").GetDouble(), $"score of example {i}");
            Assert.Equal(new ScoreResult(line.GetProperty("logprob").GetDouble(), line.GetProperty("tokens").GetInt32()).JsonLine(i), lines[i]);
        }
    }

    [SkippableFact]
    public void SlicedStepsBetweenHostFramesGiveTheGoldenLossesAndAdapter()
    {
        Ran();
        var spec = JsonDocument.Parse(File.ReadAllText(Path.Combine(host.CaseDir, "train.json"))).RootElement;
        var losses = spec.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var printed = host.Tagged("loss");
        Assert.Equal(losses.Length, printed.Count);
        for (int s = 0; s < losses.Length; s++)
        {
            Assert.Equal((s + 1).ToString(CultureInfo.InvariantCulture), printed[s][0]);
            CliRun.AssertLogLikelihood(losses[s], double.Parse(printed[s][1], CultureInfo.InvariantCulture), $"loss of step {s + 1}");
        }
        // Sliced: every step took several slices, each after one of the host's frames, and each
        // of the library's submits went under the host's queue lock (lock_queue/unlock_queue).
        var slices = host.Tagged("slices").Select(w => int.Parse(w[1], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(losses.Length, slices.Count);
        Assert.All(slices, n => Assert.True(n > 1, $"a step went in {n} slice"));
        int frames = int.Parse(Assert.Single(host.Tagged("frames"))[0], CultureInfo.InvariantCulture);
        Assert.True(frames >= slices.Sum(), $"{frames} frames for {slices.Sum()} slices");
        int locked = int.Parse(Assert.Single(host.Tagged("locked_submits"))[0], CultureInfo.InvariantCulture);
        Assert.True(locked >= slices.Sum(), $"{locked} submits under the host's lock for {slices.Sum()} slices");

        // vkp_trainer_step, blocking, on a second trainer: step 1 again.
        var blocking = Assert.Single(host.Tagged("blocking_loss"));
        CliRun.AssertLogLikelihood(losses[0], double.Parse(blocking[1], CultureInfo.InvariantCulture), "blocking loss of step 1");

        string adapter = Path.Combine(host.Out, "adapter");
        var prompt = CliRun.Tensor(Path.Combine(adapter, "adapter_model.safetensors"), "prompt_embeddings");
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(host.CaseDir, "prompt_after.safetensors"), "prompt_embeddings"), prompt);
        Assert.True(err <= 1e-3, $"adapter prompt after {losses.Length} steps: relative error {err:E3} > 1e-3");
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json"))).RootElement;
        Assert.Equal("PROMPT_TUNING", config.GetProperty("peft_type").GetString());
        Assert.Equal(prompt.Length / config.GetProperty("token_dim").GetInt32(), config.GetProperty("num_virtual_tokens").GetInt32());
    }

    /// <summary>Each return code of vkprompt.h, provoked by the host, with what its message says.</summary>
    [SkippableTheory]
    [InlineData("ARGUMENT", -1, "unknown option 'bogus_option'")]
    [InlineData("ARGUMENT_STEPS", -1, "has taken its 3 steps")]
    [InlineData("FILE", -4, "/nonexistent/vkprompt-model: model directory not found")]
    [InlineData("DOES_NOT_FIT", -2, "memory cap")]
    [InlineData("DEVICE", -3, "timelineSemaphore")]
    [InlineData("ARGUMENT_ACTIVATIONS", -1, "activations is 'fp8': expected NULL or one of fp32, bf16, fp16, auto")]
    [InlineData("DEVICE_ACTIVATIONS", -3, "bf16 activations need 16-bit storage buffers")]
    [InlineData("STRAY_HANDLE", -1, "model is not a vkp_model handle (or was destroyed)")]
    [InlineData("WRONG_TYPE", -1, "model is not a vkp_model handle (or was destroyed)")]
    [InlineData("NULL_DEVICE", -1, "host->device is NULL")]
    [InlineData("PROMPT_TOO_LONG", -1, "with a 5000000-token prompt (prompt_length)")]
    public void ErrorCodeAndMessage(string name, int code, string message)
    {
        Ran();
        var e = Assert.Single(host.Tagged("error"), w => w[0] == name);
        Assert.Equal(code.ToString(CultureInfo.InvariantCulture), e[1]);
        Assert.Contains(message, e[2]);
    }

    /// <summary>A handle misused in a call that returns nothing (destroying a context with its
    /// models open, a model with its trainers, a context as a model, a trainer twice) is refused
    /// with this thread's last error, and the object is kept: the host's calls after these run on
    /// (the blocking step and the teardown below them), where before they aborted the process or
    /// silently destroyed another object.</summary>
    [SkippableTheory]
    [InlineData("CONTEXT_WITH_MODELS", "ctx still has 1 handle(s) made from it open")]
    [InlineData("MODEL_WITH_TRAINERS", "model still has 1 handle(s) made from it open")]
    [InlineData("WRONG_TYPE_CLOSE", "model is not a vkp_model handle (or was destroyed): nothing was freed")]
    [InlineData("DOUBLE_DESTROY", "t is not a vkp_trainer handle (or was destroyed): nothing was freed")]
    public void MisusedHandlesAreRefusedAndTheirObjectsKept(string name, string message)
    {
        Ran();
        var line = Assert.Single(host.Lines, l => l.StartsWith($"refused {name} ", StringComparison.Ordinal));
        Assert.Contains(message, line, StringComparison.Ordinal);
        Assert.Contains(host.Lines, l => l.StartsWith("blocking_loss 1 ", StringComparison.Ordinal));
    }

    /// <summary>vkp_model_open2 with activations "bf16" on the library's own device: the scores
    /// within the bound docs/numerics.md gives 16-bit activations against the fp32 golden values
    /// (1e-3 + 2^-9 relative, ActivationPrecisionTests), and not those of fp32 activations, so
    /// the setting reached the model.</summary>
    [SkippableFact]
    public void SixteenBitActivationsAskedForScoreWithinTheirBound()
    {
        Ran();
        Assert.Equal("0", Assert.Single(host.Tagged("bf16_scores"))[0]);
        static List<ScoreResult> Read(string path) => File.ReadAllLines(path).Select(l => JsonDocument.Parse(l).RootElement)
            .Select(e => new ScoreResult(e.GetProperty("logprob").GetDouble(), e.GetProperty("tokens").GetInt32())).ToList();
        var bf16 = Read(Path.Combine(host.Out, "scores-bf16.jsonl"));
        var fp32 = Read(Path.Combine(host.Out, "scores.jsonl"));
        GoldenCase.AssertLogLikelihoods(GoldenCase.Doubles(Path.Combine(host.CaseDir, "scores.json")), bf16, "bf16 activations", ActivationPrecision.Bf16.UnitRoundoff() / 2);
        Assert.Equal(fp32.Select(r => r.Tokens), bf16.Select(r => r.Tokens));
        Assert.NotEqual(fp32.Select(r => r.LogProb), bf16.Select(r => r.LogProb));
    }

    [SkippableFact]
    public void AdvanceWithABudgetNothingFitsIsNotReady()
    {
        Ran();
        Assert.Equal("1", Assert.Single(host.Tagged("notready"))[0]);
    }

    [SkippableFact]
    public void LibraryCreatesItsOwnDeviceThroughTheSystemLoader()
    {
        Ran();
        Assert.Equal("0", Assert.Single(host.Tagged("create"))[0]);
    }
}
