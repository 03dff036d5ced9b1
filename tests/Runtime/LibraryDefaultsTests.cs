using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>The library's configuration is what its caller hands it: no code in src/ reads the
/// environment, and a host that creates a context with the default options gets the same
/// results whatever VKPROMPT_* variables and HOME its process has, writing nothing under HOME.</summary>
public sealed class LibraryDefaultsTests
{
    /// <summary>No source file of the library reads an environment variable; the uses of
    /// <see cref="Environment"/> left are the process's id (a temporary file's name, the holder of
    /// an output directory's lock), each after a line that says it is not configuration.</summary>
    [Fact]
    public void NoLibraryCodeReadsTheEnvironment()
    {
        var uses = new List<string>();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(TestPaths.RepoRoot, "src"), "*.cs", SearchOption.AllDirectories)
                     .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                if (!Regex.IsMatch(lines[i], @"GetEnvironmentVariable|Environment\.")) continue;
                bool justified = Regex.IsMatch(lines[i], @"Environment\.ProcessId\b") && !lines[i].Contains("GetEnvironmentVariable", StringComparison.Ordinal)
                                 && i > 0 && lines[i - 1].Contains("not configuration", StringComparison.Ordinal);
                if (!justified) uses.Add($"{Path.GetRelativePath(TestPaths.RepoRoot, file)}:{i + 1}: {lines[i].Trim()}");
            }
        }
        Assert.True(uses.Count == 0, "the library reads the environment:\n" + string.Join("\n", uses));
    }

    // Every variable the CLI reads (README's table), besides the tests' and the benchmarks' own,
    // and the renamed spellings the CLI refuses (EnvironmentSettings.RenamedVariables).
    static readonly string[] Variables =
    [
        "VKPROMPT_DEVICE", "VKPROMPT_VALIDATION", "VKPROMPT_PROFILE", "VKPROMPT_MATRIX_UNITS", "VKPROMPT_MATRIX_UNITS_HALF_A",
        "VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS", "VKPROMPT_MATMUL_TILING", "VKPROMPT_MATRIX_UNITS_TILING", "VKPROMPT_MATRIX_UNITS_FUSED_TILING",
        "VKPROMPT_ROW_LOCAL_SIZE", "VKPROMPT_ROW_SUBGROUP", "VKPROMPT_MATMUL_TUNE", "VKPROMPT_PIPELINE_STATS", "VKPROMPT_PLAN_FOR_GPU", "VKPROMPT_ATTENTION", "VKPROMPT_GOLDEN",
        "VKPROMPT_BENCH_WORKLOAD", "VKPROMPT_COOPMAT", "VKPROMPT_DISABLE_COOPMAT", "VKPROMPT_COOPMAT_HALF_A", "VKPROMPT_COOPMAT_FP16_WEIGHTS",
        "VKPROMPT_COOPMAT_TILING", "VKPROMPT_COOPMAT_FLASH_TILING",
    ];

    /// <summary>tests/LibraryProbe scores a golden case on <c>GpuContext.Create()</c> in a child
    /// process whose every VKPROMPT_* variable holds nonsense (any of which, read, would fail or
    /// change the run) and whose HOME and XDG_CACHE_HOME are empty directories: the scores are the
    /// golden ones within GoldenTests' tolerance, and the directories stay empty (no pipeline
    /// cache, nothing else). The Vulkan loader's own variables (VK_DRIVER_FILES) pass through.</summary>
    [Fact]
    public async Task DefaultOptionsIgnoreTheEnvironmentAndWriteNothingUnderHome()
    {
        var home = Directory.CreateTempSubdirectory("vkprompt-home-");
        try
        {
            var xdg = home.CreateSubdirectory("xdg-cache");
            var probe = Path.Combine(TestPaths.RepoRoot, "tests", "LibraryProbe", "bin", Configuration, "net10.0", "LibraryProbe.dll");
            Assert.True(File.Exists(probe), $"{probe} is missing: the solution build builds it (tests/VkPrompt.Tests.csproj references it)");
            var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
            };
            start.ArgumentList.Add(probe);
            start.ArgumentList.Add(ModelTestFilesPath);
            start.ArgumentList.Add("p8");
            foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("VKPROMPT_", StringComparison.Ordinal)).Concat(Variables).Distinct().ToList())
                start.Environment[name] = "nonsense ☃";
            start.Environment["HOME"] = home.FullName;
            start.Environment["XDG_CACHE_HOME"] = xdg.FullName;
            // The drivers' own shader caches (Mesa's under XDG_CACHE_HOME, NVIDIA's under HOME)
            // are theirs, not the library's: off, so that anything written there is the library's.
            start.Environment["MESA_SHADER_CACHE_DISABLE"] = "true";
            start.Environment["__GL_SHADER_DISK_CACHE"] = "0";
            using var p = Process.Start(start)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5)))
                try { await p.WaitForExitAsync(timeout.Token); }
                catch (OperationCanceledException) { p.Kill(); throw new TimeoutException("the probe did not finish in five minutes"); }
            Assert.True(p.ExitCode == 0, $"exit code {p.ExitCode}; stderr: {await stderr}");

            using var json = JsonDocument.Parse(await stdout);
            string caseDir = Path.Combine(ModelTestFilesPath, "cases", "p8");
            AssertScores(Golden(Path.Combine(caseDir, "scores.json")), json.RootElement.GetProperty("scores"), "with prompt");
            AssertScores(Golden(Path.Combine(caseDir, "scores_noprompt.json")), json.RootElement.GetProperty("noPrompt"), "without prompt");
            var written = Directory.EnumerateFileSystemEntries(home.FullName, "*", SearchOption.AllDirectories).Where(e => e != xdg.FullName).ToList();
            Assert.True(written.Count == 0, "written under HOME: " + string.Join(", ", written));
        }
        finally { home.Delete(recursive: true); }
    }

    static string ModelTestFilesPath => Model.ModelTestFiles.TinyV11;

    // The configuration the tests were built in: the probe is built beside them in the same one.
    static string Configuration => new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    static double[] Golden(string path) => JsonSerializer.Deserialize<double[]>(File.ReadAllText(path))!;

    /// <summary>GoldenTests' tolerance for a log-likelihood.</summary>
    static void AssertScores(double[] expected, JsonElement actual, string what)
    {
        var values = actual.EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-3 + 1e-4 * Math.Abs(expected[i]);
            Assert.True(Math.Abs(values[i] - expected[i]) <= tol, $"{what} example {i}: {values[i]} vs golden {expected[i]} (tolerance {tol:E2})");
        }
    }
}
