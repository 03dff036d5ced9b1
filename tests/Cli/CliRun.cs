using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Model.Safetensors;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>One in-process run of the vkprompt CLI (Program.Run) and what it printed.</summary>
public sealed record CliRun(int ExitCode, string Out, string Err)
{
    public static CliRun Of(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return new CliRun(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>The Vulkan device the tests run on (VKPROMPT_DEVICE, else auto; test.sh pins
    /// lavapipe), for the CLI tests whose point is the Vulkan path; the others use cpu.</summary>
    public static string VulkanDevice { get; } = EnvironmentSettings.GpuOptions().Device;

    public static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public string[] OutLines => Lines(Out);

    /// <summary>Asserts success, with stderr in the failure message.</summary>
    public CliRun Succeeded()
    {
        Assert.True(ExitCode == 0, $"exit code {ExitCode}; stderr: {Err}");
        return this;
    }

    public static double[] GoldenDoubles(string path) => JsonSerializer.Deserialize<double[]>(File.ReadAllText(path))!;

    public static double GoldenLoss(string caseDir) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "loss.json"))).RootElement.GetProperty("loss").GetDouble();

    /// <summary>All of one tensor of a safetensors file, as F32.</summary>
    public static float[] Tensor(string path, string key)
    {
        using var f = SafetensorsFile.Open(path);
        var data = new float[f.Tensors[key].ElementCount];
        f.ReadFloat32(key, data);
        return data;
    }

    /// <summary>docs/numerics.md's tolerance for a log-likelihood or a loss.</summary>
    public static void AssertLogLikelihood(double expected, double actual, string what)
    {
        double tol = 1e-3 + 1e-4 * Math.Abs(expected);
        Assert.True(Math.Abs(actual - expected) <= tol, $"{what}: {actual} vs golden {expected} (tolerance {tol:E2})");
    }
}
