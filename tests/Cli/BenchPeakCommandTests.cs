using System.Text.Json;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>`vkprompt bench peak` in-process on the test device, emulated where it has no matrix
/// units: its report's arithmetic and checks, and its refusals. In a GPU collection
/// (<see cref="GpuCollections"/>) so that it runs alone among that collection's tests.</summary>
[Collection(GpuCollections.Rest)]
public sealed class BenchPeakCommandTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public void EmulatedReportsBothVariantsChecked()
    {
        string path = dir.File("peak.json");
        var run = CliRun.Of("bench", "peak", "--matrix-units", "emulate", "--iterations", "5", "--workgroups", "3", "--reps", "2",
                            "--device", CliRun.VulkanDevice, "--json", path).Succeeded();
        Assert.Contains("TFLOP/s", run.Out, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        var r = json.RootElement;
        Assert.Equal("vkprompt-bench-peak/1", r.GetProperty("schema").GetString());
        Assert.Equal("emulated", r.GetProperty("matrixUnits").GetString());
        double flops = r.GetProperty("flopsPerDispatch").GetDouble();
        Assert.Equal(MatrixPeakKernel.Flops(3, 5), flops);
        var runs = r.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["registers", "shared"], runs.Select(x => x.GetProperty("fragments").GetString()));
        foreach (var x in runs)
        {
            Assert.True(x.GetProperty("ok").GetBoolean());
            Assert.Equal(0, x.GetProperty("wrongOutputs").GetInt32());
            double median = x.GetProperty("ms").GetProperty("median").GetDouble();
            Assert.Equal(flops / (median / 1e3) / 1e12, x.GetProperty("tflops").GetDouble(), 9);
        }
    }

    [Theory]
    [InlineData("--iterations", "0", "--iterations")]
    [InlineData("--iterations", "2000000", "exact")]
    [InlineData("--matrix-units", "tensor", "tensor")]
    public void RefusesBadArguments(string option, string value, string named)
    {
        var run = CliRun.Of("bench", "peak", "--matrix-units", option == "--matrix-units" ? value : "emulate", option == "--matrix-units" ? "--reps" : option,
                            option == "--matrix-units" ? "1" : value, "--device", CliRun.VulkanDevice, "--json", dir.File("bad.json"));
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains(named, run.Err, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("bad.json")));
    }
}
