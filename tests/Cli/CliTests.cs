using System.CommandLine;
using System.Reflection;
using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Runtime;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>The vkprompt CLI run in-process through Program.Run, as a user would call it.</summary>
public sealed class CliTests
{
    sealed record Outcome(int ExitCode, string Out, string Err);

    static Outcome Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return new Outcome(code, stdout.ToString(), stderr.ToString());
    }

    static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Whether the loader can see lavapipe here: it is installed and no driver pinning
    /// (VK_DRIVER_FILES, as test.sh sets for another device) hides it.</summary>
    static bool LavapipeVisible()
    {
        var pinned = Environment.GetEnvironmentVariable("VK_DRIVER_FILES") ?? Environment.GetEnvironmentVariable("VK_ICD_FILENAMES");
        return Directory.Exists("/usr/share/vulkan/icd.d")
            && Directory.GetFiles("/usr/share/vulkan/icd.d", "lvp_icd.*.json").Length > 0
            && (string.IsNullOrEmpty(pinned) || pinned.Contains("lvp", StringComparison.Ordinal));
    }

    [Fact]
    public void DevicesJsonIsAnArrayWithEveryDevice()
    {
        var r = Run("devices", "--json");
        Assert.Equal("", r.Err);
        Assert.Equal(0, r.ExitCode);
        using var json = JsonDocument.Parse(r.Out);
        var devices = json.RootElement.EnumerateArray().ToList();
        Assert.NotEmpty(devices);
        foreach (var d in devices)
        {
            Assert.False(string.IsNullOrEmpty(d.GetProperty("name").GetString()));
            Assert.True(d.GetProperty("subgroupSize").GetUInt32() > 0);
            Assert.NotEmpty(d.GetProperty("heaps").EnumerateArray());
            Assert.False(string.IsNullOrEmpty(d.GetProperty("pipelineCacheKey").GetString()));
            Assert.Contains(d.GetProperty("pipelineExecutableStatistics").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
            // Its plan beside its capabilities (tests/Runtime/DevicePlanTests checks the choices).
            Assert.Equal(d.GetProperty("name").GetString(), d.GetProperty("plan").GetProperty("device").GetString());
            Assert.Contains(d.GetProperty("plan").GetProperty("portableProduct").GetProperty("rule").GetString(), new[] { "streamed", "by-shape" });
        }
        if (LavapipeVisible())
            Assert.Contains(devices, d => d.GetProperty("driverName").GetString() == "llvmpipe" && d.GetProperty("deviceType").GetString() == "cpu");
    }

    [Fact]
    public void DevicesTableNamesEveryDeviceAndItsHeaps()
    {
        var r = Run("devices");
        Assert.Equal(0, r.ExitCode);
        foreach (var d in GpuContext.ListDevices())
            Assert.Contains($"{d.Index}: {d.Name}", r.Out, StringComparison.Ordinal);
        Assert.Contains("memory heaps", r.Out, StringComparison.Ordinal);
        Assert.Matches(@"\d+(\.\d)? [MG]iB", r.Out);
        Assert.Contains("pipeline statistics", r.Out, StringComparison.Ordinal);
        Assert.Contains("plan: matrix units", r.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("devices", "--no-such-option")]
    [InlineData("no-such-command")]
    [InlineData("devices", "--json", "extra")]
    public void ParseErrorExitsTwoWithOneLine(params string[] args)
    {
        var r = Run(args);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        var line = Assert.Single(Lines(r.Err));
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.Contains("--help", line, StringComparison.Ordinal);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void VersionPrintsTheAssemblyVersion()
    {
        var r = Run("--version");
        Assert.Equal(0, r.ExitCode);
        var version = typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(version, r.Out.Trim());
    }

    [Theory]
    [InlineData("devices", "--json")]
    [InlineData("demo")]
    public void HelpDescribesTheCommandAndItsOptions(string command, params string[] options)
    {
        var r = Run(command, "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains($"vkprompt {command}", r.Out, StringComparison.Ordinal);
        foreach (var option in options.Append("--verbose"))
            Assert.Contains(option, r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void NoCommandShowsTheCommands()
    {
        var r = Run();
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("devices", r.Out, StringComparison.Ordinal);
        Assert.Contains("demo", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void DemoTrainsAPromptAndItsLossFalls()
    {
        var dir = Directory.CreateTempSubdirectory("vkprompt-demo").FullName;
        try
        {
            var r = Run("demo", "--steps", "40", "--output", dir);
            Assert.True(r.ExitCode == 0, r.Err);
            Assert.Contains("RANDOM weights", r.Out, StringComparison.Ordinal);
            Assert.Contains("with the trained prompt", r.Out, StringComparison.Ordinal);
            foreach (var f in new[] { "adapter_model.safetensors", "adapter_config.json", "metrics.jsonl", "training.png" })
                Assert.True(File.Exists(Path.Combine(dir, f)), $"demo wrote no {f}");
            var losses = File.ReadLines(Path.Combine(dir, "metrics.jsonl"))
                .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToList();
            Assert.Equal(40, losses.Count);
            // Batch losses are noisy; compare the means of the first and last ten steps.
            Assert.True(losses.Take(10).Average() > losses.TakeLast(10).Average(), $"loss did not fall: {string.Join(", ", losses)}");

            // Run again, it replaces its own run; it refuses a run of another model.
            Assert.Equal(0, Run("demo", "--steps", "2", "--output", dir).ExitCode);
            Assert.Equal(2, File.ReadLines(Path.Combine(dir, "metrics.jsonl")).Count());
            var config = Path.Combine(dir, "adapter_config.json");
            File.WriteAllText(config, File.ReadAllText(config).Replace("demo-model", "someone-elses-model", StringComparison.Ordinal));
            var refused = Run("demo", "--steps", "2", "--output", dir);
            Assert.Equal(CliConventions.UserError, refused.ExitCode);
            Assert.Contains("holds a training run that is not an earlier demo's", refused.Err, StringComparison.Ordinal);
            Assert.Equal(2, File.ReadLines(Path.Combine(dir, "metrics.jsonl")).Count());
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>Runs a one-command CLI whose command throws <paramref name="e"/>.</summary>
    static Outcome Throwing(Exception e, params string[] extra)
    {
        var fail = new Command("fail");
        fail.SetAction(int (_) => throw e);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliConventions.Invoke(CliConventions.Root("test", fail), ["fail", .. extra], stdout, stderr);
        return new Outcome(code, stdout.ToString(), stderr.ToString());
    }

    static Exception UserFailure(string kind) => kind switch
    {
        "gpu" => new GpuException("no Vulkan device found"),
        "model" => new ModelFormatException("model/config.json", "d_model is missing"),
        "usage" => new UsageException("--steps must be positive"),
        "file" => new FileNotFoundException("could not find file 'x.json'"),
        "directory" => new DirectoryNotFoundException("could not find directory 'model'"),
        "io" => new IOException("disk full"),
        "access" => new UnauthorizedAccessException("access to 'out' is denied"),
        "json" => new JsonException("'}' is invalid after a value"),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    [Theory]
    [InlineData("gpu")]
    [InlineData("model")]
    [InlineData("usage")]
    [InlineData("file")]
    [InlineData("directory")]
    [InlineData("io")]
    [InlineData("access")]
    [InlineData("json")]
    public void UserFailureIsOneLineAndExitsTwo(string kind)
    {
        var e = UserFailure(kind);
        var r = Throwing(e);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: {e.Message}", Assert.Single(Lines(r.Err)));
    }

    [Fact]
    public void VerboseAddsTheStackTrace()
    {
        var r = Throwing(new ModelFormatException("model/config.json", "d_model is missing"), "--verbose");
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.StartsWith("error: model/config.json: d_model is missing", r.Err, StringComparison.Ordinal);
        Assert.Contains(" at ", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void MultiLineMessageStaysOnOneLine()
    {
        var r = Throwing(new GpuException("first\nsecond"));
        Assert.Equal("error: first second", Assert.Single(Lines(r.Err)));
    }

    [Fact]
    public void BugIsAnInternalErrorAndExitsOne()
    {
        var r = Throwing(new InvalidOperationException("invariant broken"));
        Assert.Equal(CliConventions.InternalError, r.ExitCode);
        var line = Assert.Single(Lines(r.Err));
        Assert.StartsWith("internal error: InvalidOperationException: invariant broken", line, StringComparison.Ordinal);
    }

    [Fact]
    public void DeviceOptionDefaultsLikeGpuOptionsAndTakesAnySpec()
    {
        var device = CliConventions.DeviceOption();
        var command = new RootCommand { device };
        Assert.Equal(EnvironmentSettings.GpuOptions().Device, command.Parse([]).GetValue(device));
        Assert.Equal("1", command.Parse(["--device", "1"]).GetValue(device));
        Assert.Equal("cpu", command.Parse(["--device", "cpu"]).GetValue(device));
        Assert.Contains("cpu", device.Description, StringComparison.Ordinal);
    }
}
