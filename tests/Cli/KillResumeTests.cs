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
/// adapter writes, validation), from a fixed seed, and keyed to the run's progress so that a
/// loaded machine shifts them without bunching them; each kill is a separate process, as after a
/// real crash.
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
        Assert.Equal(0, RunChild(Train(whole), kill: null));

        // The moments are keyed to the run's progress, not to the wall clock, so a loaded machine
        // (start-up alone can take seconds) moves them but cannot bunch them all into start-up:
        // every other kill comes a random 0-2 s after the process starts (start-up, loading,
        // the first steps), the others a random 0-300 ms after the checkpoint reaches a step drawn
        // further along each time (inside a step, a validation, a checkpoint or adapter write).
        var killed = dir.File("killed");
        var random = new Random(21);
        int killedMidRun = 0;
        var stepsAtKills = new List<int>();
        for (int k = 0; k < kills; k++)
        {
            int from = CheckpointStep(killed);
            int? target = k % 2 == 1 ? Math.Min(steps - 2, from + 1 + random.Next(5)) : null;
            int delay = target is null ? random.Next(2000) : random.Next(300);
            int? code = RunChild(Train(killed), kill: (target, delay, killed));
            if (code is null) killedMidRun++;
            else Assert.Equal(0, code);
            stepsAtKills.Add(CheckpointStep(killed));
        }
        output.WriteLine($"{killedMidRun} of {kills} kills landed before the run ended; checkpoint steps after each: {string.Join(' ', stepsAtKills)}");
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

    /// <summary>Runs the CLI in a child process. With <paramref name="kill"/>, kills it (SIGKILL)
    /// <c>Delay</c> ms after its checkpoint reaches step <c>AtStep</c> (null: after it starts),
    /// returning null if it was still running then; else returns its exit code.</summary>
    static int? RunChild(string[] args, (int? AtStep, int Delay, string Output)? kill)
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
        if (kill is { } k)
        {
            if (k.AtStep is int step)
                while (!child.HasExited && CheckpointStep(k.Output) < step) Thread.Sleep(5);
            if (!child.WaitForExit(k.Delay))
            {
                child.Kill(entireProcessTree: true);   // SIGKILL on Unix
                child.WaitForExit();
                return null;
            }
        }
        child.WaitForExit();
        return child.ExitCode;
    }

    /// <summary>The step of the run's checkpoint; 0 where there is none yet (or it is being
    /// replaced: the rename is atomic, but the file may go between the check and the open).</summary>
    static int CheckpointStep(string output)
    {
        var path = Path.Combine(output, "checkpoint.safetensors");
        try
        {
            using var f = VkPrompt.Model.Safetensors.SafetensorsFile.Open(path);
            return int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is ModelFormatException or IOException) { return 0; }
    }

    static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
