using System.Diagnostics;
using System.Text.Json;
using Xunit;

namespace VkPrompt.Tests.Tools;

/// <summary>tools/VkPrompt.HostSample end to end, as a child process: a host with its own
/// validated device renders frames, lends the device, and trains in budgeted slices.</summary>
public sealed class HostSampleTests
{
    /// <summary>A short run with a budget large enough for whole steps to finish within it: it
    /// exits 0, measures every frame of both phases, completes steps with a finite, positive loss
    /// in at least one slice each, the library submitted only under the host's queue lock, the
    /// host's own copy of the prompt chained on a step's ticket equals the trainer's prompt, and
    /// the validation layer reported nothing from instance creation to destruction.</summary>
    [Fact]
    public async Task RendersTrainsInSlicesAndExitsCleanly()
    {
        var sample = Path.Combine(TestPaths.RepoRoot, "tools", "VkPrompt.HostSample", "bin", Configuration, "net10.0", "VkPrompt.HostSample.dll");
        Assert.True(File.Exists(sample), $"{sample} is missing: the solution build builds it (tests/VkPrompt.Tests.csproj references it)");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { sample, "--frames", "60", "--warmup-frames", "5", "--fps", "30", "--budget-ms", "250", "--rounds", "1", "--validation", "--json" })
            start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5)))
            try { await p.WaitForExitAsync(timeout.Token); }
            catch (OperationCanceledException) { p.Kill(); throw new TimeoutException("the sample did not finish in five minutes"); }
        Assert.True(p.ExitCode == 0, $"exit code {p.ExitCode}; stderr: {await stderr}");

        using var json = JsonDocument.Parse(await stdout);
        var root = json.RootElement;
        Assert.Empty(root.GetProperty("validation_errors").EnumerateArray());
        var phases = root.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(2, phases.Count);
        Assert.Equal(JsonValueKind.Null, phases[0].GetProperty("budget_ms").ValueKind);
        Assert.Equal(250, phases[1].GetProperty("budget_ms").GetDouble());
        foreach (var phase in phases)
        {
            var frame = phase.GetProperty("frame_ms");
            Assert.True(frame.GetProperty("p50").GetDouble() > 0);
            Assert.True(frame.GetProperty("p50").GetDouble() <= frame.GetProperty("max").GetDouble());
        }
        var training = phases[1];
        int steps = training.GetProperty("steps").GetInt32();
        // A step is several hundred ms of lavapipe time with validation on: a few slices of 250 ms,
        // so 60 frames finish one even on a loaded machine.
        Assert.True(steps >= 1, $"no step completed in 60 frames at a 250 ms budget");
        Assert.True(training.GetProperty("slices_per_step").GetDouble() >= 1);
        double loss = training.GetProperty("first_loss").GetDouble();
        Assert.True(double.IsFinite(loss) && loss > 0, $"loss {loss}");
        // At least one submit per completed step's slices, all inside the host's lock (it counts them).
        Assert.True(root.GetProperty("library_submits").GetInt32() >= steps);
        Assert.True(training.GetProperty("prompt_copy_matches").GetBoolean(), "the host's copy of the prompt, chained on the step's ticket, differs from the trainer's");
    }

    // The configuration the tests were built in: the sample is built beside them in the same one.
    static string Configuration => new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
}
