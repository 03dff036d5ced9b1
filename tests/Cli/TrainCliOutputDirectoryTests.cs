using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>Issue 21, findings 1, 2, 3 and the temporary files of 8: what a run may do to the
/// files in its output directory (docs/reliability.md). Each test reproduces a finding and checks
/// the exit code, the message and the files before and after.</summary>
public sealed class TrainCliOutputDirectoryTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    static readonly string Data = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl");

    /// <summary>A two-step run of the tiny golden model on the CPU, unless <paramref name="extra"/> gives --steps.</summary>
    static string[] Train(string output, params string[] extra) =>
        ["train", "--model", ModelTestFiles.TinyV11, "--train", Data, "--output", output, "--device", "cpu", "--batch-size", "2",
         "--prompt-length", "2", .. extra.Contains("--steps") ? extra : [.. extra, "--steps", "2"]];

    /// <summary>Every file under <paramref name="root"/> (relative name → bytes), the lock files
    /// excepted: what a refused or failed run must leave as it was.</summary>
    static SortedDictionary<string, byte[]> Files(string root) => new(
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) is not (TrainingDirectory.LockFile or TrainingDirectory.LockHolderFile))
            .ToDictionary(f => Path.GetRelativePath(root, f), File.ReadAllBytes), StringComparer.Ordinal);

    static void AssertSameFiles(SortedDictionary<string, byte[]> before, string root)
    {
        var after = Files(root);
        Assert.Equal(before.Keys, after.Keys);
        foreach (var (name, bytes) in before) Assert.True(bytes.SequenceEqual(after[name]), $"{name} changed");
    }

    static string Error(CliRun r)
    {
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        return Assert.Single(CliRun.Lines(r.Err));
    }

    static int[] LoggedSteps(string output) =>
        File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!["step"]!.GetValue<int>()).ToArray();

    /// <summary>Finding 1: --overwrite with --init file: inside the output directory read the
    /// prompt after deleting it ("prompt file not found", an empty directory), and any failure of
    /// the new run left the earlier one destroyed. Now the prompt is read first, and the earlier run
    /// stays whole until the new one has taken its first step.</summary>
    [Fact]
    public void OverwriteReadsItsInputsFirstAndKeepsTheEarlierRunUntilTheNewOneHasStarted()
    {
        var output = dir.File("ow2");
        CliRun.Of(Train(output, "--export-npy", "--seed", "1")).Succeeded();
        var npy = Path.Combine(output, Adapter.NpyFile);
        var exported = PromptFile.Load(npy, 128, out _);

        CliRun.Of(Train(output, "--init", "file:" + npy, "--overwrite", "--lr", "1e-30", "--weight-decay", "0")).Succeeded();
        Assert.Equal([1, 2], LoggedSteps(output));
        // Started from the exported prompt, which a learning rate of 1e-30 leaves as it was.
        Assert.Equal(exported, CliRun.Tensor(Path.Combine(output, Adapter.WeightsFile), PromptFile.TensorName));
        Assert.False(File.Exists(npy), "the earlier run's export, listed in its manifest, is replaced with it");

        // A run that fails before its first step leaves the earlier run as it was: one refused
        // before it is built (a batch too large to index), and one that fails after it has taken
        // the directory (class init without labels, found as the prompt is made); the errors
        // themselves are BadInputTests' matter.
        var before = Files(output);
        foreach (var failing in new[] { new[] { "--batch-size", "100000" }, ["--init", "class"] })
        {
            var failed = CliRun.Of(Train(output, ["--overwrite", .. failing]));
            Assert.NotEqual(0, failed.ExitCode);
            AssertSameFiles(before, output);
        }
    }

    /// <summary>Finding 2 for train: --overwrite deleted a user's best/notes.txt (the whole best
    /// directory went), and train without --overwrite replaced a user's metrics.jsonl and
    /// training.png. A directory without VkPrompt's manifest is not a run's; in a run's directory
    /// only the files the manifest lists are replaced, and a file by a run's name it does not list
    /// is refused.</summary>
    [Fact]
    public void ATrainRunReplacesOnlyTheFilesItsManifestLists()
    {
        var mine = dir.File("mine");
        Directory.CreateDirectory(mine);
        File.WriteAllText(Path.Combine(mine, TrainingDirectory.MetricsFile), "{\"step\": 1, \"loss\": 3}\n");
        File.WriteAllText(Path.Combine(mine, "training.png"), "my chart");
        var before = Files(mine);
        Assert.Equal($"error: --output {mine} holds files VkPrompt did not write (metrics.jsonl, training.png) and no {TrainingDirectory.ManifestFile}; " +
                     "a run writes only into a new or empty directory or one of its own: choose another --output", Error(CliRun.Of(Train(mine))));
        foreach (var flag in new[] { "--overwrite", "--resume" })
            Assert.Contains("holds files VkPrompt did not write", Error(CliRun.Of(Train(mine, flag))), StringComparison.Ordinal);
        AssertSameFiles(before, mine);

        var output = dir.File("run");
        CliRun.Of(Train(output, "--validation", Data, "--eval-every", "1")).Succeeded();
        Directory.CreateDirectory(Path.Combine(output, "best", "important"));
        File.WriteAllText(Path.Combine(output, "best", "notes.txt"), "mine");
        File.WriteAllText(Path.Combine(output, "best", "important", "model.bin"), "mine too");
        File.WriteAllBytes(Path.Combine(output, Adapter.NpyFile), [1, 2, 3]);
        before = Files(output);
        Assert.Equal($"error: --output {output} holds prompt.npy, which no run there wrote ({TrainingDirectory.ManifestFile} does not list it) and this run would replace: " +
                     "move it or choose another --output", Error(CliRun.Of(Train(output, "--overwrite", "--export-npy"))));
        AssertSameFiles(before, output);

        CliRun.Of(Train(output, "--overwrite", "--seed", "5")).Succeeded();
        Assert.Equal("mine", File.ReadAllText(Path.Combine(output, "best", "notes.txt")));
        Assert.Equal("mine too", File.ReadAllText(Path.Combine(output, "best", "important", "model.bin")));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(output, Adapter.NpyFile)));
        Assert.False(File.Exists(Path.Combine(output, "best", Adapter.WeightsFile)), "the earlier run's best adapter is replaced with it (this run has no validation)");
        Assert.NotEqual(before[Adapter.WeightsFile], File.ReadAllBytes(Path.Combine(output, Adapter.WeightsFile)));
    }

    /// <summary>Finding 2 for the directory itself: --output / wrote five files into /. The check
    /// is asked of the library directly, so a regression could not litter the root.</summary>
    [Fact]
    public void TheRootAndOtherDirectoriesOfForeignFilesAreRefused()
    {
        var root = Path.GetPathRoot(Path.GetTempPath())!;
        var e = Assert.Throws<TrainingOptionException>(() => new TrainingDirectory(root).Check(new TrainOptions { Overwrite = true }));
        Assert.StartsWith($"output directory {root} holds files VkPrompt did not write (", e.Message, StringComparison.Ordinal);

        // Empty is fine, and so is a directory that holds only a lock of an earlier attempt.
        var empty = dir.File("empty");
        Directory.CreateDirectory(empty);
        File.WriteAllText(Path.Combine(empty, TrainingDirectory.LockFile), "");
        CliRun.Of(Train(empty)).Succeeded();

        // A manifest edited to name a file outside the directory is not trusted with deletions.
        File.WriteAllText(Path.Combine(empty, TrainingDirectory.ManifestFile), "{\"files\": [\"../victim\"]}");
        File.WriteAllText(dir.File("victim"), "keep");
        Assert.Contains("is not a VkPrompt run manifest", Error(CliRun.Of(Train(empty, "--overwrite"))), StringComparison.Ordinal);
        Assert.Equal("keep", File.ReadAllText(dir.File("victim")));
    }

    /// <summary>Finding 2 for demo: it deleted DIR/best/ recursively, a user's
    /// best/important/model.bin with it. It now replaces only its own run's files, and refuses a
    /// directory that is no run's.</summary>
    [Fact]
    public void DemoDeletesNothingItDidNotWrite()
    {
        var foreign = dir.File("foreign");
        Directory.CreateDirectory(Path.Combine(foreign, "best", "important"));
        File.WriteAllText(Path.Combine(foreign, "best", "important", "model.bin"), "weights");
        var refused = CliRun.Of("demo", "--steps", "2", "--device", "cpu", "--output", foreign);
        Assert.EndsWith($"{foreign} holds files VkPrompt did not write (best) and no {TrainingDirectory.ManifestFile}; a run writes only into a new or empty directory or one of its own: choose another --output",
                        Error(refused), StringComparison.Ordinal);
        Assert.Equal("weights", File.ReadAllText(Path.Combine(foreign, "best", "important", "model.bin")));

        var demo = dir.File("demo");
        CliRun.Of("demo", "--steps", "2", "--device", "cpu", "--output", demo).Succeeded();
        Directory.CreateDirectory(Path.Combine(demo, "best", "important"));
        File.WriteAllText(Path.Combine(demo, "best", "important", "model.bin"), "weights");
        CliRun.Of("demo", "--steps", "2", "--device", "cpu", "--output", demo).Succeeded();
        Assert.Equal("weights", File.ReadAllText(Path.Combine(demo, "best", "important", "model.bin")));
        Assert.Equal([1, 2], LoggedSteps(demo));
    }

    /// <summary>Finding 2 for grad: --output naming the model's own model.safetensors replaced the
    /// weights with the gradient (exit 0). An output that is one of the command's inputs is refused.</summary>
    [Fact]
    public void GradRefusesToWriteOverItsInputs()
    {
        var model = dir.File("model");
        Directory.CreateDirectory(model);
        foreach (var f in Directory.EnumerateFiles(ModelTestFiles.TinyV11)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        var prompt = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "prompt0.safetensors");
        var data = dir.File("data.jsonl");
        File.Copy(Data, data);
        var before = Files(dir.Path);
        string[] Grad(string output) => ["grad", "--model", model, "--prompt", prompt, "--data", data, "--output", output, "--device", "cpu"];

        var weights = Path.Combine(model, "model.safetensors");
        Assert.Equal($"error: --output {weights} is also an input (--model {model}); writing it would destroy it: choose another --output", Error(CliRun.Of(Grad(weights))));
        Assert.Equal($"error: --output {data} is also an input (--data {data}); writing it would destroy it: choose another --output", Error(CliRun.Of(Grad(data))));
        AssertSameFiles(before, dir.Path);
        CliRun.Of(Grad(dir.File("grad.safetensors"))).Succeeded();
    }

    /// <summary>Finding 3: two concurrent runs into one directory both exited 0, the metrics
    /// holding every step twice. The second now gets a one-line error naming the first's process,
    /// and the first ends as an undisturbed run does: every step logged once and the adapter bit
    /// for bit that of the same run alone.</summary>
    [Fact]
    public void ASecondConcurrentRunIsRefusedAndTheFirstCompletesUntouched()
    {
        const int steps = 40;
        string[] Long(string output, params string[] extra) =>
            [.. Train(output, "--steps", steps.ToString(CultureInfo.InvariantCulture), "--save-every", "5", "--seed", "7"), .. extra];
        var output = dir.File("shared");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"));
        foreach (var a in Long(output)) start.ArgumentList.Add(a);
        var stderr = new ConcurrentQueue<string>();
        using (var child = Process.Start(start)!)
        {
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, e) => { if (e.Data is not null) stderr.Enqueue(e.Data); };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            var metrics = Path.Combine(output, TrainingDirectory.MetricsFile);
            var deadline = Stopwatch.StartNew();
            while (!(File.Exists(metrics) && File.ReadAllText(metrics).Length > 0))
            {
                Assert.False(child.HasExited, $"the first run exited before its first step: {string.Join('\n', stderr)}");
                Assert.True(deadline.Elapsed < TimeSpan.FromMinutes(2), "no step in two minutes");
                Thread.Sleep(10);
            }
            foreach (var flag in new[] { "--overwrite", "--resume" })
            {
                var second = CliRun.Of(Long(output, flag));
                Assert.Equal($"error: --output {output} is in use by another run (process {child.Id}); wait for it to end or choose another --output", Error(second));
                Assert.False(child.HasExited, "the first run ended before the second was refused: the test proves nothing (make it longer)");
            }
            Assert.True(child.WaitForExit(TimeSpan.FromMinutes(3)), "the first run did not end");
            Assert.True(child.ExitCode == 0, $"the first run failed: {string.Join('\n', stderr)}");
        }
        Assert.Equal(Enumerable.Range(1, steps), LoggedSteps(output));
        var alone = dir.File("alone");
        CliRun.Of(Long(alone)).Succeeded();
        Assert.Equal(CliRun.Tensor(Path.Combine(alone, Adapter.WeightsFile), PromptFile.TensorName),
                     CliRun.Tensor(Path.Combine(output, Adapter.WeightsFile), PromptFile.TensorName));
        // Released at the end: the next run may take the directory.
        CliRun.Of(Long(output, "--resume")).Succeeded();
    }

    /// <summary>Finding 8's leftovers: the hidden temporary files a kill -9 leaves mid-write
    /// (.checkpoint.safetensors.GUID.tmp) were never cleaned. The next run in the directory, resumed
    /// or overwriting, removes the temporaries of the run's files and nothing else.</summary>
    [Theory]
    [InlineData("--resume")]
    [InlineData("--overwrite")]
    public void TheNextRunRemovesTheTemporaryFilesOfAnInterruptedWrite(string flag)
    {
        var output = dir.File("out");
        CliRun.Of(Train(output, "--validation", Data, "--eval-every", "1")).Succeeded();
        string Temp(string file) => $".{file}.{Guid.NewGuid():N}.tmp";
        var stale = new[]
        {
            Path.Combine(output, Temp(TrainingDirectory.CheckpointFile)),
            Path.Combine(output, Temp(Adapter.WeightsFile)),
            Path.Combine(output, Temp("training.png")),
            Path.Combine(output, "best", Temp(Adapter.ConfigFile)),
        };
        foreach (var f in stale) File.WriteAllText(f, "half a file");
        var users = new[] { Path.Combine(output, "notes.tmp"), Path.Combine(output, $".notes.txt.{Guid.NewGuid():N}.tmp") };
        foreach (var f in users) File.WriteAllText(f, "mine");

        CliRun.Of(Train(output, flag, "--steps", "3")).Succeeded();
        Assert.All(stale, f => Assert.False(File.Exists(f), $"{Path.GetFileName(f)} is left"));
        Assert.All(users, f => Assert.Equal("mine", File.ReadAllText(f)));
    }
}
