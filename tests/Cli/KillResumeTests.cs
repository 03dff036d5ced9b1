using System.Diagnostics;
using System.Globalization;
using VkPrompt.Model;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using Xunit.Abstractions;

namespace VkPrompt.Tests.Cli;

/// <summary>
/// Issue 21's acceptance for crashes: a training run killed with SIGKILL at 20 random moments,
/// each time started again with --resume, ends bit for bit where the uninterrupted run ends (the
/// adapter, best/ and the checkpoint's prompt), and no temporary file is left in the directory.
/// The moments are drawn over the life of a process (start-up, loading, steps, checkpoint and
/// adapter writes, validation), from a fixed seed so a failure can be replayed; each kill is a
/// separate process, as after a real crash.
/// </summary>
public sealed class KillResumeTests(ITestOutputHelper output) : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public void TwentyKillsThenResumeEqualTheUninterruptedRun()
    {
        const int steps = 60, kills = 20;
        string model = ModelTestFiles.TinyV11;
        string data = Path.Combine(model, "cases", "p8", "data.jsonl");
        string[] Train(string into) => ["train", "--model", model, "--train", data, "--validation", data, "--output", into,
                                        "--init", "random", "--prompt-length", "4", "--steps", steps.ToString(CultureInfo.InvariantCulture),
                                        "--batch-size", "2", "--save-every", "1", "--eval-every", "5", "--seed", "5", "--dropout", "0.1",
                                        "--device", "cpu", "--resume"];

        var whole = dir.File("whole");
        var watch = Stopwatch.StartNew();
        Assert.Equal(0, RunChild(Train(whole), killAfter: null));
        double wholeMs = watch.Elapsed.TotalMilliseconds;

        var killed = dir.File("killed");
        var random = new Random(21);
        int killedMidRun = 0;
        var stepsAtKills = new List<int>();
        for (int k = 0; k < kills; k++)
        {
            // A sixth of the whole run at most: each process gets a little further than the last
            // (it resumes from the last checkpoint), so the 20 moments fall across the whole run,
            // start-up and loading included, and the run is still unfinished at the last kill.
            int delay = (int)(random.NextDouble() * wholeMs / 6);
            int? code = RunChild(Train(killed), delay);
            if (code is null) killedMidRun++;
            else Assert.Equal(0, code);
            stepsAtKills.Add(CheckpointStep(killed));
        }
        output.WriteLine($"uninterrupted run: {wholeMs:F0} ms; {killedMidRun} of {kills} kills landed before the run ended; " +
                         $"checkpoint steps after each: {string.Join(' ', stepsAtKills)}");
        Assert.True(killedMidRun >= kills / 2, $"only {killedMidRun} of {kills} kills interrupted a run");
        // The kills fell between steps all along the run, not only in start-up.
        Assert.True(stepsAtKills.Distinct().Count() >= 5, $"the kills left the checkpoint at steps {string.Join(' ', stepsAtKills)} only");

        var last = CliRun.Of(Train(killed)).Succeeded();
        foreach (string file in new[] { Adapter.WeightsFile, Path.Combine("best", Adapter.WeightsFile) })
            Assert.Equal(Bits(CliRun.Tensor(Path.Combine(whole, file), PromptFile.TensorName)),
                         Bits(CliRun.Tensor(Path.Combine(killed, file), PromptFile.TensorName)));
        Assert.Equal(Bits(CliRun.Tensor(Path.Combine(whole, "checkpoint.safetensors"), "prompt")),
                     Bits(CliRun.Tensor(Path.Combine(killed, "checkpoint.safetensors"), "prompt")));
        var leftovers = Directory.EnumerateFiles(killed, "*", SearchOption.AllDirectories)
                                 .Where(f => Path.GetFileName(f).Contains(".tmp", StringComparison.Ordinal)).ToList();
        Assert.True(leftovers.Count == 0, "temporary files left: " + string.Join(", ", leftovers) + "\n" + last.Out);
    }

    /// <summary>Runs the CLI in a child process; kills it (SIGKILL) after <paramref name="killAfter"/>
    /// ms if it is still running, returning null, else its exit code.</summary>
    static int? RunChild(string[] args, int? killAfter)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // The project reference copies the CLI next to the test assembly.
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        child.OutputDataReceived += (_, _) => { };
        child.ErrorDataReceived += (_, _) => { };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        if (killAfter is int ms && !child.WaitForExit(ms))
        {
            child.Kill(entireProcessTree: true);   // SIGKILL on Unix
            child.WaitForExit();
            return null;
        }
        child.WaitForExit();
        return child.ExitCode;
    }

    /// <summary>The step of the run's checkpoint; 0 where there is none yet.</summary>
    static int CheckpointStep(string output)
    {
        var path = Path.Combine(output, "checkpoint.safetensors");
        if (!File.Exists(path)) return 0;
        using var f = VkPrompt.Model.Safetensors.SafetensorsFile.Open(path);
        return int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture);
    }

    static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
