using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using VkPrompt.Model;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>
/// Issue 20 part 5: <c>mpiexec -n 2 vkprompt train ... --distributed mpi</c> gives the golden
/// prompt after K steps and the one-process result on a batch that does not divide evenly between
/// the ranks; a rank killed mid-run ends every rank within a stated time, the output names it,
/// and the last checkpoint resumes; a rank that fails names itself and ends the others.
/// MPICH's mpiexec (tools/install-deps.sh installs it) starts the CLI's dll once per rank.
/// </summary>
public sealed class MpiTests : IDisposable
{
    /// <summary>How long every rank may take to end once one has died or failed: mpiexec (hydra)
    /// kills the others as soon as it sees one end badly, well under a second here.</summary>
    static readonly TimeSpan EndBound = TimeSpan.FromSeconds(30);

    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    /// <summary>Every golden case (fp32 weights) of every golden model.</summary>
    public static TheoryData<string, string> GoldenCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var row in GoldenCase.Cases(TestPaths.Golden, ["tiny-v10-bf16", "tiny-v11"], ["vulkan"]))
            data.Add((string)row[0], (string)row[1]);
        return data;
    }

    /// <param name="device">--device's value, or several specs for --devices (each rank's own).</param>
    static string[] TrainArgs(string model, string caseDir, string output, int steps, int batch, string device) =>
        ["train", "--model", Path.Combine(TestPaths.Golden, model), "--train", Path.Combine(caseDir, "data.jsonl"), "--output", output,
         "--init", "file:" + Path.Combine(caseDir, "prompt0.safetensors"), "--steps", steps.ToString(CultureInfo.InvariantCulture),
         "--batch-size", batch.ToString(CultureInfo.InvariantCulture), "--no-shuffle", "--dropout", "0", device.Contains(',') ? "--devices" : "--device", device];

    /// <summary>The golden case's K steps on two ranks, each on the tests' Vulkan device (with
    /// --device auto, each rank's local index among the devices: lavapipe for both).</summary>
    [Theory, MemberData(nameof(GoldenCases))]
    public void TwoRanksTrainTheGoldenPromptAfterKSteps(string model, string caseName)
    {
        string caseDir = Path.Combine(TestPaths.Golden, model, "cases", caseName);
        var spec = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "train.json"))).RootElement;
        int steps = spec.GetProperty("steps").GetInt32();
        var output = dir.File("out");
        var run = Mpiexec(2, [.. TrainArgs(model, caseDir, output, steps, spec.GetProperty("batch_size").GetInt32(), CliRun.VulkanDevice), "--distributed", "mpi"]);
        Assert.True(run.ExitCode == 0, $"mpiexec exited {run.ExitCode}:\n{run.Output}");

        var prompt = CliRun.Tensor(Path.Combine(output, Adapter.WeightsFile), PromptFile.TensorName);
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(caseDir, "prompt_after.safetensors"), PromptFile.TensorName), prompt);
        Assert.True(err <= 1e-3, $"adapter prompt after {steps} steps on 2 ranks: relative error {err:E3} > 1e-3");
        var losses = spec.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var logged = Metrics(output);
        Assert.Equal(Enumerable.Range(1, steps), logged.Select(n => n["step"]!.GetValue<int>()));
        for (int s = 0; s < steps; s++)
            CliRun.AssertLogLikelihood(losses[s], logged[s]["loss"]!.GetValue<double>(), $"loss of step {s + 1} on 2 ranks");
        // Rank 0 alone printed progress; each rank said which process it is.
        Assert.Single(Regex.Matches(run.Output, "^final training loss", RegexOptions.Multiline));
        Assert.Contains("vkprompt: rank 0 of 2 is process", run.Output, StringComparison.Ordinal);
        Assert.Contains("vkprompt: rank 1 of 2 is process", run.Output, StringComparison.Ordinal);
    }

    /// <summary>Batch 3 on two ranks (shares of 2 and 1) gives the one-process run's prompt and
    /// losses; so do two ranks of two devices each (--devices: four workers, shares of 1, 1, 1
    /// and none, the idle worker on rank 1).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ABatchThatDoesNotDivideEvenlyGivesTheOneProcessResult(int devicesPerRank)
    {
        string caseDir = Path.Combine(TestPaths.Golden, "tiny-v11", "cases", "p8");
        const int steps = 4, batch = 3;
        var single = dir.File("single");
        CliRun.Of(TrainArgs("tiny-v11", caseDir, single, steps, batch, CliRun.VulkanDevice)).Succeeded();
        var ranks = dir.File("ranks");
        string devices = string.Join(',', Enumerable.Repeat(CliRun.VulkanDevice, devicesPerRank));
        var run = Mpiexec(2, [.. TrainArgs("tiny-v11", caseDir, ranks, steps, batch, devices), "--distributed", "mpi"]);
        Assert.True(run.ExitCode == 0, $"mpiexec exited {run.ExitCode}:\n{run.Output}");

        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(single, Adapter.WeightsFile), PromptFile.TensorName),
                                             CliRun.Tensor(Path.Combine(ranks, Adapter.WeightsFile), PromptFile.TensorName));
        Assert.True(err <= 1e-3, $"batch {batch} on 2 ranks vs one process: relative error {err:E3} > 1e-3");
        var expected = Metrics(single);
        var actual = Metrics(ranks);
        Assert.Equal(steps, actual.Count);
        for (int s = 0; s < steps; s++)
            CliRun.AssertLogLikelihood(expected[s]["loss"]!.GetValue<double>(), actual[s]["loss"]!.GetValue<double>(), $"loss of step {s + 1} on 2 ranks");
    }

    /// <summary>SIGKILL to rank 1 once checkpoints are being written: mpiexec and every rank end
    /// within <see cref="EndBound"/>, non-zero; the output names the rank (each rank's "rank N of
    /// 2 is process PID" and mpiexec's "BAD TERMINATION ... PID"); the adapter left is whole; and
    /// --resume on two ranks ends with the uninterrupted run's prompt.</summary>
    [Fact]
    public void KillingOneRankEndsEveryRankNamesItAndTheCheckpointResumes()
    {
        string caseDir = Path.Combine(TestPaths.Golden, "tiny-v11", "cases", "p8");
        const int steps = 60;
        string[] Train(string output) => [.. TrainArgs("tiny-v11", caseDir, output, steps, 2, "cpu"), "--save-every", "1"];
        var whole = dir.File("whole");
        CliRun.Of(Train(whole)).Succeeded();

        var killed = dir.File("killed");
        using var job = Start(2, [.. Train(killed), "--distributed", "mpi"]);
        int victim = job.WaitForRankPid(1, EndBound);
        int survivor = job.WaitForRankPid(0, EndBound);
        var clock = Stopwatch.StartNew();
        while (CheckpointStep(killed) < 2)
        {
            Assert.False(job.Process.HasExited, $"the run ended before its second checkpoint:\n{job.Output}");
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), $"no checkpoint of step 2 after 2 minutes:\n{job.Output}");
            Thread.Sleep(5);
        }
        Process.GetProcessById(victim).Kill();   // SIGKILL
        var killedAt = Stopwatch.StartNew();
        Assert.True(job.Process.WaitForExit(EndBound), $"mpiexec still running {EndBound.TotalSeconds} s after rank 1 was killed:\n{job.Output}");
        while (Alive(survivor) && killedAt.Elapsed < EndBound) Thread.Sleep(10);
        Assert.False(Alive(survivor), $"rank 0 (process {survivor}) still running {EndBound.TotalSeconds} s after rank 1 was killed");
        job.Process.WaitForExit();   // the output's end
        Assert.NotEqual(0, job.Process.ExitCode);
        Assert.Contains($"vkprompt: rank 1 of 2 is process {victim} on", job.Output, StringComparison.Ordinal);
        Assert.Matches($@"BAD TERMINATION[\s\S]*PID {victim}\b", job.Output);
        int at = CheckpointStep(killed);
        Assert.InRange(at, 2, steps - 1);
        // Written atomically: whatever the kill interrupted, the adapter there is a whole one.
        Assert.Equal(8 * 128, CliRun.Tensor(Path.Combine(killed, Adapter.WeightsFile), PromptFile.TensorName).Length);

        var resumed = Mpiexec(2, [.. Train(killed), "--distributed", "mpi", "--resume"]);
        Assert.True(resumed.ExitCode == 0, $"the resumed run exited {resumed.ExitCode}:\n{resumed.Output}");
        Assert.Contains($"resuming from step {at}", resumed.Output, StringComparison.Ordinal);
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(whole, Adapter.WeightsFile), PromptFile.TensorName),
                                             CliRun.Tensor(Path.Combine(killed, Adapter.WeightsFile), PromptFile.TensorName));
        Assert.True(err <= 1e-3, $"killed at step {at} and resumed on 2 ranks vs the uninterrupted run: relative error {err:E3} > 1e-3");
        Assert.Equal(Enumerable.Range(1, steps), Metrics(killed).Select(n => n["step"]!.GetValue<int>()).Distinct());
    }

    /// <summary>SIGINT to rank 1 alone (as a scheduler may signal one process): both ranks stop
    /// after the same step, rank 0 saves the checkpoint of it and says so, and both exit 130.</summary>
    [Fact]
    public void ASignalToOneRankStopsEveryRankAfterTheSameStep()
    {
        string caseDir = Path.Combine(TestPaths.Golden, "tiny-v11", "cases", "p8");
        const int steps = 100_000;
        var output = dir.File("out");
        using var job = Start(2, [.. TrainArgs("tiny-v11", caseDir, output, steps, 2, "cpu"), "--save-every", "1", "--distributed", "mpi"]);
        int rank1 = job.WaitForRankPid(1, EndBound);
        var clock = Stopwatch.StartNew();
        while (CheckpointStep(output) < 2)
        {
            Assert.False(job.Process.HasExited, $"the run ended before its second checkpoint:\n{job.Output}");
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), $"no checkpoint of step 2 after 2 minutes:\n{job.Output}");
            Thread.Sleep(5);
        }
        using (var kill = Process.Start("kill", ["-INT", rank1.ToString(CultureInfo.InvariantCulture)])!)
        {
            kill.WaitForExit();
            Assert.Equal(0, kill.ExitCode);
        }
        Assert.True(job.Process.WaitForExit(EndBound), $"mpiexec still running {EndBound.TotalSeconds} s after SIGINT to rank 1:\n{job.Output}");
        job.Process.WaitForExit();
        Assert.Equal(130, job.Process.ExitCode);
        int at = CheckpointStep(output);
        Assert.Contains($"interrupted at step {at}: checkpoint saved", job.Output, StringComparison.Ordinal);
        Assert.Equal(at, Metrics(output).Count);
    }

    /// <summary>Validation runs on rank 0 and its early stop ends every rank at the same step, as in
    /// one process (TrainCliTests.PatienceStopsTheRunWhenValidationStopsImproving's run: an
    /// unmoving prompt, so the 3 evaluations after step 2 do not improve); a resume on two ranks
    /// with a larger patience reads the count from the checkpoint on every rank and stops 2 later.</summary>
    [Fact]
    public void EarlyStoppingOnRankZeroStopsEveryRankAtTheStepOneProcessStops()
    {
        var output = dir.File("out");
        string data = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl");
        string[] Train(int patience, params string[] extra) =>
            ["train", "--model", ModelTestFiles.TinyV11, "--train", data, "--validation", data, "--output", output, "--device", "cpu",
             "--batch-size", "2", "--prompt-length", "2", "--steps", "40", "--eval-every", "2", "--save-every", "100",
             "--lr", "1e-30", "--weight-decay", "0", "--patience", patience.ToString(CultureInfo.InvariantCulture), "--distributed", "mpi", .. extra];

        var first = Mpiexec(2, Train(3));
        Assert.True(first.ExitCode == 0, $"mpiexec exited {first.ExitCode}:\n{first.Output}");
        Assert.Contains("stopped early at step 8: 3 evaluations in a row did not improve on step 2 (--patience 3)", first.Output, StringComparison.Ordinal);
        Assert.Equal(Enumerable.Range(1, 8), Metrics(output).Select(n => n["step"]!.GetValue<int>()));
        Assert.Equal([2, 4, 6, 8], Metrics(output).Where(n => n["val_loss"] is not null).Select(n => n["step"]!.GetValue<int>()));

        var longer = Mpiexec(2, Train(5, "--resume"));
        Assert.True(longer.ExitCode == 0, $"mpiexec exited {longer.ExitCode}:\n{longer.Output}");
        Assert.Contains("stopped early at step 12: 5 evaluations in a row did not improve on step 2 (--patience 5)", longer.Output, StringComparison.Ordinal);
        Assert.Equal(12, CheckpointStep(output));
    }

    /// <summary>A rank whose command fails (here rank 1 is given a training file that does not
    /// exist, through mpiexec's MPMD form) prints "rank 1: error: ..." and ends the job (MPI_Abort)
    /// with its exit code, rank 0 included, instead of leaving it waiting in a collective.</summary>
    [Fact]
    public void ARankThatFailsNamesItselfAndEndsEveryRank()
    {
        string caseDir = Path.Combine(TestPaths.Golden, "tiny-v11", "cases", "p8");
        var output = dir.File("out");
        string[] good = [.. TrainArgs("tiny-v11", caseDir, output, 200, 2, "cpu"), "--distributed", "mpi"];
        string[] bad = [.. good.Select(a => a == Path.Combine(caseDir, "data.jsonl") ? dir.File("missing.jsonl") : a)];
        var clock = Stopwatch.StartNew();
        var run = Mpiexec([good, bad]);
        Assert.True(clock.Elapsed < EndBound + TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
        Assert.Equal(2, run.ExitCode);
        Assert.True(run.Output.Contains($"rank 1: error: {dir.File("missing.jsonl")}", StringComparison.Ordinal), $"no error line of rank 1 in:\n{run.Output}");
        Assert.False(File.Exists(Path.Combine(output, Adapter.WeightsFile)), "an adapter was written");
    }

    /// <summary>grad on two ranks: the golden loss (printed once, by rank 0) and gradient of the
    /// whole file, each rank computing its share.</summary>
    [Fact]
    public void TwoRanksComputeTheGoldenGradient()
    {
        string caseDir = Path.Combine(TestPaths.Golden, "tiny-v11", "cases", "p8");
        var output = dir.File("grad.safetensors");
        var run = Mpiexec(2, ["grad", "--model", Path.Combine(TestPaths.Golden, "tiny-v11"), "--prompt", Path.Combine(caseDir, "prompt0.safetensors"),
                              "--data", Path.Combine(caseDir, "data.jsonl"), "--output", output, "--device", CliRun.VulkanDevice, "--distributed", "mpi"]);
        Assert.True(run.ExitCode == 0, $"mpiexec exited {run.ExitCode}:\n{run.Output}");
        var printed = Assert.Single(CliRun.Lines(run.Output), l => l.StartsWith("{\"loss\"", StringComparison.Ordinal));
        CliRun.AssertLogLikelihood(CliRun.GoldenLoss(caseDir), JsonDocument.Parse(printed).RootElement.GetProperty("loss").GetDouble(), "loss on 2 ranks");
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(caseDir, "grad.safetensors"), "prompt_gradient"), CliRun.Tensor(output, "prompt_gradient"));
        Assert.True(err <= 1e-3, $"prompt gradient on 2 ranks: relative error {err:E3} > 1e-3");
    }

    /// <summary>bench --distributed mpi on a tiny model: one worker's share (batch 3 over 2
    /// workers: 2; over 4, two devices a rank: 1), the step times (each the slowest rank's), and
    /// the efficiency as their medians' ratio.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void BenchReportsStepTimesAndScalingEfficiency(int devicesPerRank)
    {
        var json = dir.File("scaling.json");
        string[] devices = devicesPerRank == 1 ? ["--device", CliRun.VulkanDevice] : ["--devices", string.Join(',', Enumerable.Repeat(CliRun.VulkanDevice, devicesPerRank))];
        var run = Mpiexec(2, ["bench", "--shape", Path.Combine(TestPaths.Golden, "tiny-v11"), "--batch-size", "3", "--input-length", "16", "--target-length", "8",
                              "--prompt-length", "4", "--steps", "3", "--warmup", "1", .. devices, "--json", json, "--distributed", "mpi"]);
        Assert.True(run.ExitCode == 0, $"mpiexec exited {run.ExitCode}:\n{run.Output}");
        BenchCommandTests.AssertScalingReport(json, distributed: "mpi", workers: 2 * devicesPerRank, batch: 3, steps: 3);
        Assert.Single(Regex.Matches(run.Output, "^scaling efficiency: ", RegexOptions.Multiline));
    }

    static List<JsonNode> Metrics(string output) =>
        File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!).ToList();

    static bool Alive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
    }

    /// <summary>The step of the run's checkpoint; 0 where there is none yet.</summary>
    static int CheckpointStep(string output)
    {
        try
        {
            using var f = VkPrompt.Model.Safetensors.SafetensorsFile.Open(Path.Combine(output, TrainingDirectory.CheckpointFile));
            return int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is ModelFormatException or IOException) { return 0; }
    }

    /// <summary>mpiexec from PATH: MPICH's, which CI installs. Not a skip where it is missing:
    /// the failure names the package.</summary>
    static string MpiexecPath { get; } =
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, "mpiexec")).FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("mpiexec was not found on PATH: the tests of --distributed mpi need MPICH (apt-get install mpich; tools/install-deps.sh installs it)");

    sealed record Finished(int ExitCode, string Output);

    /// <summary>Runs the CLI as <paramref name="ranks"/> ranks of one job and waits for it.</summary>
    static Finished Mpiexec(int ranks, string[] args) => Mpiexec([.. Enumerable.Repeat(args, ranks)]);

    /// <summary>Runs rank i with <paramref name="perRank"/>[i] (mpiexec's MPMD form) and waits.</summary>
    static Finished Mpiexec(string[][] perRank)
    {
        using var job = Start(perRank);
        Assert.True(job.Process.WaitForExit(TimeSpan.FromMinutes(5)), $"mpiexec still running after 5 minutes:\n{job.Output}");
        job.Process.WaitForExit();
        return new Finished(job.Process.ExitCode, job.Output);
    }

    static Job Start(int ranks, string[] args) => Start([.. Enumerable.Repeat(args, ranks)]);

    static Job Start(string[][] perRank)
    {
        var start = new ProcessStartInfo(MpiexecPath) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        for (int r = 0; r < perRank.Length; r++)
        {
            if (r > 0) start.ArgumentList.Add(":");
            foreach (var a in (string[])["-n", "1", dotnet, Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"), .. perRank[r]])
                start.ArgumentList.Add(a);
        }
        return new Job(Process.Start(start)!);
    }

    /// <summary>A running mpiexec and everything its ranks printed so far, both streams in one.</summary>
    sealed class Job : IDisposable
    {
        readonly StringBuilder output = new();
        public Process Process { get; }

        public Job(Process process)
        {
            Process = process;
            process.StandardInput.Close();
            process.OutputDataReceived += (_, e) => Append(e.Data);
            process.ErrorDataReceived += (_, e) => Append(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        void Append(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
        }

        public string Output
        {
            get { lock (output) return output.ToString(); }
        }

        /// <summary>The process id rank <paramref name="rank"/> says it is.</summary>
        public int WaitForRankPid(int rank, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                var m = Regex.Match(Output, $@"vkprompt: rank {rank} of \d+ is process (\d+)");
                if (m.Success) return int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                Assert.False(Process.HasExited, $"mpiexec ended before rank {rank} started:\n{Output}");
                Assert.True(clock.Elapsed < timeout, $"rank {rank} did not start within {timeout.TotalSeconds} s:\n{Output}");
                Thread.Sleep(10);
            }
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }
}
