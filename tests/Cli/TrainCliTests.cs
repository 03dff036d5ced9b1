using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>Issue 4: train and grad through the CLI against the golden files, resuming after a
/// kill, the PEFT adapter on disk, and the memory report of --recompute.</summary>
public sealed class TrainCliTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    static string Device(string backend) => backend == "cpu" ? "cpu" : CliRun.VulkanDevice;

    /// <summary>The golden cases that train in about a second: p128 is left to GoldenTests.</summary>
    public static TheoryData<string, string, string> FastCases()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var (model, c) in new[] { ("tiny-v10-bf16", "p5"), ("tiny-v11", "p8") })
            foreach (var backend in new[] { "cpu", "vulkan" })
                data.Add(model, c, backend);
        return data;
    }

    [Theory, MemberData(nameof(FastCases))]
    public void TrainWritesTheGoldenPromptAfterKSteps(string model, string caseName, string backend) =>
        AssertTrainsGoldenCase(dir, model, caseName, "--device", Device(backend));

    /// <summary>train on a golden case with train.json's settings and <paramref name="deviceArgs"/>:
    /// the adapter holds prompt_after and the log the losses, within docs/numerics.md's tolerance.</summary>
    internal static void AssertTrainsGoldenCase(TempDir dir, string model, string caseName, params string[] deviceArgs)
    {
        string caseDir = Path.Combine(TestPaths.Golden, model, "cases", caseName);
        var spec = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "train.json"))).RootElement;
        int steps = spec.GetProperty("steps").GetInt32();
        var output = dir.File("out");
        CliRun.Of(["train", "--model", Path.Combine(TestPaths.Golden, model), "--train", Path.Combine(caseDir, "data.jsonl"), "--output", output,
                   "--init", "file:" + Path.Combine(caseDir, "prompt0.safetensors"), "--steps", steps.ToString(CultureInfo.InvariantCulture),
                   "--batch-size", spec.GetProperty("batch_size").GetInt32().ToString(CultureInfo.InvariantCulture),
                   "--no-shuffle", "--dropout", "0", .. deviceArgs]).Succeeded();

        var prompt = CliRun.Tensor(Path.Combine(output, Adapter.WeightsFile), PromptFile.TensorName);
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(caseDir, "prompt_after.safetensors"), PromptFile.TensorName), prompt);
        Assert.True(err <= 1e-3, $"adapter prompt after {steps} steps: relative error {err:E3} > 1e-3");

        var losses = spec.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var logged = File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(Enumerable.Range(1, steps), logged.Select(n => n["step"]!.GetValue<int>()));
        for (int s = 0; s < steps; s++)
            CliRun.AssertLogLikelihood(losses[s], logged[s]["loss"]!.GetValue<double>(), $"loss of step {s + 1}");
    }

    [Theory, MemberData(nameof(FastCases))]
    public void GradWritesTheGoldenGradientAndPrintsTheLoss(string model, string caseName, string backend)
    {
        string caseDir = Path.Combine(TestPaths.Golden, model, "cases", caseName);
        var output = dir.File("grad.safetensors");
        var r = CliRun.Of("grad", "--model", Path.Combine(TestPaths.Golden, model), "--prompt", Path.Combine(caseDir, "prompt0.safetensors"),
                          "--data", Path.Combine(caseDir, "data.jsonl"), "--output", output, "--device", Device(backend)).Succeeded();

        var printed = JsonDocument.Parse(Assert.Single(r.OutLines)).RootElement;
        Assert.Equal(["loss"], printed.EnumerateObject().Select(p => p.Name));
        CliRun.AssertLogLikelihood(CliRun.GoldenLoss(caseDir), printed.GetProperty("loss").GetDouble(), "loss");

        // Compatible with the golden file: the same single key, dtype and shape.
        var goldenPath = Path.Combine(caseDir, "grad.safetensors");
        using (var golden = SafetensorsFile.Open(goldenPath))
        using (var written = SafetensorsFile.Open(output))
        {
            var g = Assert.Single(golden.Tensors.Values);
            var w = Assert.Single(written.Tensors.Values);
            Assert.Equal("prompt_gradient", w.Name);
            Assert.Equal(g.Name, w.Name);
            Assert.Equal(g.DType, w.DType);
            Assert.Equal(g.Shape, w.Shape);
        }
        double err = Check.NormRelativeError(CliRun.Tensor(goldenPath, "prompt_gradient"), CliRun.Tensor(output, "prompt_gradient"));
        Assert.True(err <= 1e-3, $"prompt gradient relative error {err:E3} > 1e-3");
    }

    [Fact]
    public void AdapterIsAPeftPromptTuningAdapterThatReadsBack()
    {
        string model = ModelTestFiles.TinyV10Bf16;
        var output = dir.File("out");
        CliRun.Of("train", "--model", model, "--train", Path.Combine(model, "cases", "p5", "data.jsonl"), "--output", output,
                  "--init", "text:license terms", "--prompt-length", "3", "--steps", "2", "--batch-size", "2", "--dropout", "0",
                  "--export-npy", "--device", "cpu").Succeeded();

        float[] prompt;
        using (var weights = SafetensorsFile.Open(Path.Combine(output, Adapter.WeightsFile)))
        {
            var t = Assert.Single(weights.Tensors.Values);
            Assert.Equal("prompt_embeddings", t.Name);
            Assert.Equal("F32", t.DType);
            Assert.Equal([3L, 64L], t.Shape);
            Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, weights.Metadata);
            prompt = new float[t.ElementCount];
            weights.ReadFloat32(t.Name, prompt);
        }
        // With no validation set the adapter is the prompt after the last step.
        Assert.Equal(CliRun.Tensor(Path.Combine(output, TrainingDirectory.CheckpointFile), "prompt"), prompt);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, Adapter.ConfigFile)))!;
        Assert.Equal("PROMPT_TUNING", config["peft_type"]!.GetValue<string>());
        Assert.Equal("SEQ_2_SEQ_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal(3, config["num_virtual_tokens"]!.GetValue<int>());
        Assert.Equal(64, config["token_dim"]!.GetValue<int>());
        Assert.Equal(1, config["num_transformer_submodules"]!.GetValue<int>());
        Assert.Equal(6, config["num_attention_heads"]!.GetValue<int>());
        Assert.Equal(2, config["num_layers"]!.GetValue<int>());
        Assert.Equal("TEXT", config["prompt_tuning_init"]!.GetValue<string>());
        Assert.Equal("license terms", config["prompt_tuning_init_text"]!.GetValue<string>());
        Assert.Equal(Path.GetFullPath(model), config["base_model_name_or_path"]!.GetValue<string>());
        Assert.True(config["inference_mode"]!.GetValue<bool>());

        Assert.Equal(prompt, PromptFile.Load(output, 64, out int length));
        Assert.Equal(3, length);
        var (npy, shape) = NpyFile.Read(Path.Combine(output, "prompt.npy"));
        Assert.Equal([3L, 64L], shape);
        Assert.Equal(prompt, npy);
    }

    static double PeakMiB(CliRun r)
    {
        var m = Regex.Match(r.Out, @"peak device memory ([0-9.]+) MiB");
        Assert.True(m.Success, $"no peak memory line in: {r.Out}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>Six layers per stack, so that storing every block's activations costs megabytes
    /// more than recomputing them; the numbers must not change: the trained prompt, and since
    /// Adafactor's first update keeps only the gradient's signs, `grad`'s gradient itself.</summary>
    [Fact]
    public void RecomputeReportsLessPeakDeviceMemoryForTheSameResult()
    {
        var model = dir.File("model");
        var config = new T5Config { VocabSize = 904, DModel = 64, DKv = 16, NumHeads = 4, DFf = 256, NumLayers = 6, DropoutRate = 0 };
        RandomT5.Write(model, config, seed: 5, spieceModelPath: Path.Combine(ModelTestFiles.TinyV11, "spiece.model"));
        string[] Train(string output) => ["train", "--model", model, "--train", Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl"),
                                          "--output", output, "--init", "random", "--prompt-length", "20", "--steps", "1", "--batch-size", "4",
                                          "--device", CliRun.VulkanDevice];
        var store = CliRun.Of(Train(dir.File("store"))).Succeeded();
        var recompute = CliRun.Of([.. Train(dir.File("recompute")), "--recompute"]).Succeeded();

        Assert.True(PeakMiB(recompute) < PeakMiB(store), $"--recompute peak {PeakMiB(recompute)} MiB, default {PeakMiB(store)} MiB");
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(dir.File("store"), Adapter.WeightsFile), PromptFile.TensorName),
                                             CliRun.Tensor(Path.Combine(dir.File("recompute"), Adapter.WeightsFile), PromptFile.TensorName));
        Assert.True(err <= 1e-6, $"--recompute changed the trained prompt: relative difference {err:E3}");

        string[] Grad(string output) => ["grad", "--model", model, "--data", Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl"),
                                         "--prompt", Path.Combine(dir.File("store"), Adapter.WeightsFile), "--output", output, "--device", CliRun.VulkanDevice];
        CliRun.Of(Grad(dir.File("grad-store.safetensors"))).Succeeded();
        CliRun.Of([.. Grad(dir.File("grad-recompute.safetensors")), "--recompute"]).Succeeded();
        var stored = CliRun.Tensor(dir.File("grad-store.safetensors"), "prompt_gradient");
        Assert.Contains(stored, g => g != 0);
        err = Check.NormRelativeError(stored, CliRun.Tensor(dir.File("grad-recompute.safetensors"), "prompt_gradient"));
        Assert.True(err <= 1e-6, $"--recompute changed grad's prompt gradient: relative difference {err:E3}");
    }

    static int CheckpointStep(string output)
    {
        var path = Path.Combine(output, TrainingDirectory.CheckpointFile);
        if (!File.Exists(path)) return 0;
        using var f = SafetensorsFile.Open(path);
        return int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture);
    }

    /// <summary>A run killed after a checkpoint and resumed ends bit for bit where the
    /// uninterrupted run does, with shuffling and dropout on so the data order and the masks
    /// after the resume point must be the ones the uninterrupted run drew. The killed run is a
    /// separate process, as after a real crash: nothing in memory survives it.</summary>
    [Fact]
    public void ResumeAfterAKillEqualsTheUninterruptedRun()
    {
        const int steps = 10, saveEvery = 2;
        string model = ModelTestFiles.TinyV10Bf16;
        string[] Train(string output) => ["train", "--model", model, "--train", Path.Combine(model, "cases", "p5", "data.jsonl"), "--output", output,
                                          "--init", "random", "--prompt-length", "4", "--steps", steps.ToString(CultureInfo.InvariantCulture),
                                          "--batch-size", "2", "--save-every", saveEvery.ToString(CultureInfo.InvariantCulture),
                                          "--seed", "3", "--dropout", "0.1", "--device", "cpu"];
        var whole = dir.File("whole");
        CliRun.Of(Train(whole)).Succeeded();

        var killed = dir.File("killed");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // The project reference copies the CLI next to the test assembly.
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"));
        foreach (var a in Train(killed)) start.ArgumentList.Add(a);
        var stderr = new ConcurrentQueue<string>();
        int step;
        using (var child = Process.Start(start)!)
        {
            // Both streams are drained so the child never blocks on a full pipe.
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, e) => { if (e.Data is not null) stderr.Enqueue(e.Data); };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            while (CheckpointStep(killed) < saveEvery)
            {
                Assert.False(child.HasExited, $"the training process exited before its first checkpoint: {string.Join('\n', stderr)}");
                Thread.Sleep(10);
            }
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
            step = CheckpointStep(killed);
        }
        // Killed between two checkpoints, not after the end: there is something left to resume.
        Assert.InRange(step, saveEvery, steps - 1);

        var resumed = CliRun.Of([.. Train(killed), "--resume"]).Succeeded();
        Assert.Contains($"resuming from step {step}", resumed.Out, StringComparison.Ordinal);
        Assert.Equal(Bits(CliRun.Tensor(Path.Combine(whole, Adapter.WeightsFile), PromptFile.TensorName)),
                     Bits(CliRun.Tensor(Path.Combine(killed, Adapter.WeightsFile), PromptFile.TensorName)));
    }

    /// <summary>A resumed run takes its prompt length from the checkpoint unless told one, refuses
    /// a checkpoint of another length or another model (its floats would be regrouped into rows of
    /// another shape and saved over the adapter), and says when there is no step left to take.</summary>
    [Fact]
    public void ResumeChecksTheCheckpointAgainstTheModelAndPromptLength()
    {
        var output = dir.File("out");
        string data = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl");
        string[] Train(string model, int steps, params string[] extra) =>
            ["train", "--model", model, "--train", data, "--output", output, "--device", "cpu", "--batch-size", "2",
             "--steps", steps.ToString(CultureInfo.InvariantCulture), .. extra];
        CliRun.Of(Train(ModelTestFiles.TinyV11, 1, "--prompt-length", "3")).Succeeded();
        var adapter = File.ReadAllBytes(Path.Combine(output, Adapter.WeightsFile));

        var otherModel = CliRun.Of(Train(ModelTestFiles.TinyV10Bf16, 2, "--resume"));
        Assert.Equal(VkPrompt.Cli.Cli.UserError, otherModel.ExitCode);
        Assert.EndsWith("holds a prompt of shape [3, 128] but the model's d_model is 64: it was trained on another model", Assert.Single(CliRun.Lines(otherModel.Err)), StringComparison.Ordinal);
        var otherLength = CliRun.Of(Train(ModelTestFiles.TinyV11, 2, "--resume", "--prompt-length", "5"));
        Assert.Equal(VkPrompt.Cli.Cli.UserError, otherLength.ExitCode);
        Assert.EndsWith("holds a 3-token prompt; resume with --prompt-length 3 (now 5)", Assert.Single(CliRun.Lines(otherLength.Err)), StringComparison.Ordinal);
        Assert.Equal(adapter, File.ReadAllBytes(Path.Combine(output, Adapter.WeightsFile)));

        var resumed = CliRun.Of(Train(ModelTestFiles.TinyV11, 2, "--resume")).Succeeded();
        Assert.Contains("prompt 3 x 128", resumed.Out, StringComparison.Ordinal);
        Assert.Contains("resuming from step 1", resumed.Out, StringComparison.Ordinal);
        Assert.Equal(2, CheckpointStep(output));
        Assert.Equal(3 * 128, CliRun.Tensor(Path.Combine(output, Adapter.WeightsFile), PromptFile.TensorName).Length);

        var done = CliRun.Of(Train(ModelTestFiles.TinyV11, 2, "--resume")).Succeeded();
        Assert.Contains("no step to take: the checkpoint is at step 2 of --steps 2", done.Out, StringComparison.Ordinal);
    }

    /// <summary>--patience ends a run once validation stops improving. A learning rate too small to
    /// move the prompt makes every evaluation after the first tie the best, so the run must stop at
    /// its (1 + patience)-th evaluation; the count is in the checkpoint, so a resume with the same
    /// patience takes no step and one with a larger patience stops exactly that many evaluations on.</summary>
    [Fact]
    public void PatienceStopsTheRunWhenValidationStopsImproving()
    {
        var output = dir.File("out");
        string data = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl");
        string[] Train(int patience, params string[] extra) =>
            ["train", "--model", ModelTestFiles.TinyV11, "--train", data, "--validation", data, "--output", output, "--device", "cpu",
             "--batch-size", "2", "--prompt-length", "2", "--steps", "40", "--eval-every", "2", "--save-every", "100",
             "--lr", "1e-30", "--weight-decay", "0", "--patience", patience.ToString(CultureInfo.InvariantCulture), .. extra];
        int[] LoggedSteps() => File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!["step"]!.GetValue<int>()).ToArray();

        var first = CliRun.Of(Train(3)).Succeeded();
        Assert.Contains("stopped early at step 8: 3 evaluations in a row did not improve on step 2 (--patience 3)", first.Out, StringComparison.Ordinal);
        Assert.Equal(Enumerable.Range(1, 8), LoggedSteps());
        // These targets are free text (no label set), so validation decodes greedily and scores
        // exact matches; that path once failed on any target longer than 7 tokens.
        var evaluations = File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!).Where(n => n["val_loss"] is not null).ToList();
        Assert.Equal([2, 4, 6, 8], evaluations.Select(n => n["step"]!.GetValue<int>()));
        Assert.All(evaluations, n => Assert.NotNull(n["val_accuracy"]));
        Assert.Single(evaluations.Select(n => n["val_loss"]!.GetValue<double>()).Distinct());
        Assert.Equal(8, CheckpointStep(output));

        var same = CliRun.Of(Train(3, "--resume")).Succeeded();
        Assert.Contains("stopped early at step 8", same.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("final training loss", same.Out, StringComparison.Ordinal);
        Assert.Equal(8, CheckpointStep(output));

        var longer = CliRun.Of(Train(5, "--resume")).Succeeded();
        Assert.Contains("stopped early at step 12: 5 evaluations in a row did not improve on step 2 (--patience 5)", longer.Out, StringComparison.Ordinal);
        Assert.Equal(Enumerable.Range(1, 12), LoggedSteps());

        var noValidation = CliRun.Of(["train", "--model", ModelTestFiles.TinyV11, "--train", data, "--output", dir.File("other"), "--patience", "2"]);
        Assert.Equal(VkPrompt.Cli.Cli.UserError, noValidation.ExitCode);
        Assert.Equal("error: --patience stops on validation scores: it needs --validation", Assert.Single(CliRun.Lines(noValidation.Err)));
    }

    /// <summary>Validation of free-text targets counts exact matches of each example's greedy
    /// decoding with its own target: half the targets here are what generate prints for their
    /// input under the (unmoving) prompt, so the accuracy must be exactly one half. Validation
    /// decodes shortest first; a text paired with another example's target would miss.</summary>
    [Fact]
    public void FreeTextValidationComparesEachExamplesDecodingWithItsOwnTarget()
    {
        string model = ModelTestFiles.TinyV11;
        string data = Path.Combine(model, "cases", "p8", "data.jsonl");
        string prompt = Path.Combine(model, "cases", "p8", "prompt0.safetensors");
        var texts = CliRun.Of("generate", "--model", model, "--data", data, "--prompt", prompt, "--max-new-tokens", "128", "--device", "cpu").Succeeded().OutLines
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("text").GetString()!).ToList();
        Assert.True(texts.Distinct().Count() > 1, "the decodings should differ between examples");
        var examples = DataFile.Read(data);
        string validation = dir.File("val.jsonl");
        File.WriteAllLines(validation, examples.Select((e, i) => JsonSerializer.Serialize(new Dictionary<string, string>
            { ["input"] = e.Input, ["target"] = i % 2 == 0 ? texts[i] : "no example decodes to this" })));

        var output = dir.File("out");
        CliRun.Of("train", "--model", model, "--train", data, "--validation", validation, "--output", output, "--device", "cpu",
                  "--init", "file:" + prompt, "--lr", "1e-30", "--weight-decay", "0", "--dropout", "0", "--steps", "1", "--batch-size", "2").Succeeded();
        var evaluated = JsonNode.Parse(Assert.Single(File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile))))!;
        Assert.Equal(0.5, evaluated["val_accuracy"]!.GetValue<double>());
    }

    /// <summary>A second train into the directory of a finished run is refused, leaving it whole;
    /// --overwrite replaces exactly what the run wrote (an old export included) and keeps the rest;
    /// with --resume it is a contradiction.</summary>
    [Fact]
    public void AnEarlierRunIsKeptUnlessOverwritten()
    {
        var output = dir.File("out");
        string data = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl");
        string[] Train(params string[] extra) =>
            ["train", "--model", ModelTestFiles.TinyV11, "--train", data, "--output", output, "--device", "cpu", "--batch-size", "2",
             "--prompt-length", "2", "--steps", "2", .. extra];
        CliRun.Of(Train("--export-npy", "--seed", "1")).Succeeded();
        File.WriteAllText(Path.Combine(output, "notes.txt"), "mine");
        var first = File.ReadAllBytes(Path.Combine(output, Adapter.WeightsFile));

        var again = CliRun.Of(Train());
        Assert.Equal(VkPrompt.Cli.Cli.UserError, again.ExitCode);
        Assert.Equal($"error: {output} holds an earlier run (checkpoint.safetensors); continue it with --resume, replace it with --overwrite, or choose another --output",
                     Assert.Single(CliRun.Lines(again.Err)));
        Assert.Equal(first, File.ReadAllBytes(Path.Combine(output, Adapter.WeightsFile)));

        var both = CliRun.Of(Train("--resume", "--overwrite"));
        Assert.Equal(VkPrompt.Cli.Cli.UserError, both.ExitCode);
        Assert.Contains("give one", Assert.Single(CliRun.Lines(both.Err)), StringComparison.Ordinal);

        CliRun.Of(Train("--overwrite", "--seed", "2")).Succeeded();
        Assert.NotEqual(first, File.ReadAllBytes(Path.Combine(output, Adapter.WeightsFile)));
        Assert.False(File.Exists(Path.Combine(output, Adapter.NpyFile)), "the first run's export is gone with it");
        Assert.Equal("mine", File.ReadAllText(Path.Combine(output, "notes.txt")));
        Assert.Equal([1, 2], File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!["step"]!.GetValue<int>()));
    }

    /// <summary>Ctrl-C (SIGINT) and SIGTERM (kill, docker stop, a scheduler's time limit) end
    /// training after the step in flight with a checkpoint of it, and exit 128 + the signal, so a
    /// script does not take the run for finished. The child starts with both signals at their
    /// default disposition: a process started with SIGINT ignored (a background job of a
    /// non-interactive shell, as ./test.sh may be) rightly keeps ignoring it.</summary>
    [Theory]
    [InlineData("INT", VkPrompt.Cli.Cli.Interrupted, "interrupted")]
    [InlineData("TERM", VkPrompt.Cli.Cli.Terminated, "terminated")]
    public async Task ASignalSavesACheckpointAndExitsWith128PlusIt(string signal, int exitCode, string said)
    {
        var output = dir.File("out");
        var start = new ProcessStartInfo("python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[] { "-c", "import os, signal, sys\nfor s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_DFL)\nos.execvp(sys.argv[1], sys.argv[1:])",
                                  Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet", Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"),
                                  "train", "--model", ModelTestFiles.TinyV11, "--train", Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl"),
                                  "--output", output, "--prompt-length", "2", "--batch-size", "2", "--steps", "1000000", "--device", "cpu" })
            start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        var metrics = Path.Combine(output, TrainingDirectory.MetricsFile);
        var deadline = Stopwatch.StartNew();
        while (!(File.Exists(metrics) && File.ReadAllText(metrics).Length > 0))
        {
            if (child.HasExited) Assert.Fail($"training exited before its first step: {await stderr}");
            Assert.True(deadline.Elapsed < TimeSpan.FromMinutes(2), "no step in two minutes");
            await Task.Delay(10);
        }
        using (var kill = Process.Start("kill", ["-" + signal, child.Id.ToString(CultureInfo.InvariantCulture)])!)
        {
            kill.WaitForExit();
            Assert.Equal(0, kill.ExitCode);
        }
        var sent = Stopwatch.StartNew();
        // Generous: on a loaded 2-core machine the chart and checkpoint after the signal take a while.
        if (!child.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
            Assert.Fail($"training had not exited {sent.Elapsed.TotalSeconds:F0} s after SIG{signal} (metrics: {File.ReadLines(metrics).Count()} steps); " +
                        $"stdout: {await stdout}; stderr: {await stderr}");
        }

        Assert.Equal(exitCode, child.ExitCode);
        int step = CheckpointStep(output);
        Assert.True(step >= 1, $"checkpoint at step {step}");
        Assert.Contains($"{said} at step {step}: checkpoint saved; continue with --resume", await stdout, StringComparison.Ordinal);
        Assert.Equal(step, File.ReadLines(metrics).Count());
    }

    static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
