using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text.Json;
using System.Text.Json.Nodes;
using VkPrompt.Runtime;
using VkPrompt.Tests.Cli;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Tools;

/// <summary>The NuGet packages as a user gets them, offline: packed into a folder feed, the
/// VkPrompt.Cli tool installed from it into an empty directory lists the devices and trains the
/// golden case from a directory outside the checkout, and a fresh console project that
/// references VkPrompt.Training from the feed scores the golden case.</summary>
public sealed class PackageTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    // The configuration the tests were built in, so packing finds the projects built already.
#if DEBUG
    const string Configuration = "Debug";
#else
    const string Configuration = "Release";
#endif

    static readonly string[] PackageIds = ["VkPrompt.Cli", "VkPrompt.Model", "VkPrompt.Runtime", "VkPrompt.Training"];

    static string CaseDir => Path.Combine(ModelTestFiles.TinyV11, "cases", "p8");

    [Fact]
    public void ThePackedToolAndLibrariesWorkOutsideTheCheckout()
    {
        string feed = Directory.CreateDirectory(dir.File("feed")).FullName;
        Run("dotnet", TestPaths.RepoRoot, isolated: false, "pack", Path.Combine(TestPaths.RepoRoot, "VkPrompt.Packages.slnf"), "-c", Configuration, "-o", feed, "-nologo");
        var packages = Directory.GetFiles(feed, "*.nupkg").Select(Path.GetFileName).Order().ToList();
        string version = typeof(GpuContext).Assembly.GetName().Version!.ToString(3);
        Assert.Equal(PackageIds.Select(id => $"{id}.{version}.nupkg"), packages);
        AssertRuntimePackageEmbedsEveryShader(Path.Combine(feed, $"VkPrompt.Runtime.{version}.nupkg"));

        // Only the feed and the packages this machine restored already (the global packages
        // folder, read as a local source): nothing reaches the network. The installs restore into
        // a packages folder of their own, so the feed's packages are used, not ones cached from
        // an earlier run under the same version.
        string globalPackages = Run("dotnet", dir.Path, isolated: false, "nuget", "locals", "global-packages", "--list").Split(": ", 2)[1].Trim();
        File.WriteAllText(dir.File("nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="feed" value="{feed}" />
                <add key="restored" value="{globalPackages}" />
              </packageSources>
            </configuration>
            """);

        string tools = Directory.CreateDirectory(dir.File("tools")).FullName;
        Run("dotnet", dir.Path, isolated: true, "tool", "install", "VkPrompt.Cli", "--tool-path", tools, "--configfile", dir.File("nuget.config"));
        string vkprompt = Path.Combine(tools, "vkprompt");

        string work = Directory.CreateDirectory(dir.File("work")).FullName;
        string devices = Run(vkprompt, work, isolated: true, "devices");
        foreach (var device in GpuContext.ListDevices()) Assert.Contains(device.Name, devices);

        // One step of the golden case on the Vulkan device: the shaders come from the package.
        var spec = JsonDocument.Parse(File.ReadAllText(Path.Combine(CaseDir, "train.json"))).RootElement;
        Run(vkprompt, work, isolated: true, "train", "--model", ModelTestFiles.TinyV11, "--train", Path.Combine(CaseDir, "data.jsonl"),
            "--init", "file:" + Path.Combine(CaseDir, "prompt0.safetensors"), "--steps", "1",
            "--batch-size", spec.GetProperty("batch_size").GetInt32().ToString(CultureInfo.InvariantCulture),
            "--no-shuffle", "--dropout", "0", "--device", CliRun.VulkanDevice, "--output", "adapter");
        var logged = JsonNode.Parse(Assert.Single(File.ReadLines(Path.Combine(work, "adapter", "metrics.jsonl"))))!;
        CliRun.AssertLogLikelihood(spec.GetProperty("losses")[0].GetDouble(), logged["loss"]!.GetValue<double>(), "loss of step 1");
        Assert.True(File.Exists(Path.Combine(work, "adapter", "adapter_model.safetensors")));

        // Restored through the nuget.config a folder above, as the tool was.
        string app = Directory.CreateDirectory(dir.File("app")).FullName;
        File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="VkPrompt.Training" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using System.Globalization;
            using VkPrompt.Model;
            using VkPrompt.Training;

            using var model = PromptModel.OpenOnCpu(args[0]);
            var encoder = model.Encoder();
            var examples = DataFile.Read(args[1]).Select(encoder.Encode).ToList();
            var prompts = model.Prompts([model.LoadPrompt(args[2])]);
            foreach (ScoreResult s in model.Score(examples, prompts))
                Console.WriteLine(s.LogProb.ToString("R", CultureInfo.InvariantCulture));
            """);
        Run("dotnet", app, isolated: true, "build", "-nologo", "-v", "quiet");
        var scores = CliRun.Lines(Run("dotnet", app, isolated: true, "run", "--no-build", "--", ModelTestFiles.TinyV11, Path.Combine(CaseDir, "data.jsonl"),
                                      Path.Combine(CaseDir, "prompt0.safetensors")))
                           .Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        var golden = CliRun.GoldenDoubles(Path.Combine(CaseDir, "scores.json"));
        Assert.Equal(golden.Length, scores.Length);
        for (int i = 0; i < golden.Length; i++) CliRun.AssertLogLikelihood(golden[i], scores[i], $"score of example {i}");
    }

    /// <summary>The Runtime package's assembly carries the same SPIR-V resources as the one the
    /// tests run: nothing is compiled, or read from the repository, at run time.</summary>
    static void AssertRuntimePackageEmbedsEveryShader(string nupkg)
    {
        using var zip = ZipFile.OpenRead(nupkg);
        Assert.NotNull(zip.GetEntry("lib/net10.0/VkPrompt.Runtime.xml"));
        Assert.NotNull(zip.GetEntry("README.md"));
        using var dll = new MemoryStream();
        using (var entry = zip.GetEntry("lib/net10.0/VkPrompt.Runtime.dll")!.Open()) entry.CopyTo(dll);
        dll.Position = 0;
        using var pe = new PEReader(dll);
        var reader = pe.GetMetadataReader();
        var packed = reader.ManifestResources.Select(h => reader.GetString(reader.GetManifestResource(h).Name)).Where(n => n.EndsWith(".spv")).Order();
        var built = typeof(GpuContext).Assembly.GetManifestResourceNames().Where(n => n.EndsWith(".spv")).Order().ToList();
        Assert.NotEmpty(built);
        Assert.Equal(built, packed);
    }

    /// <summary>Runs <paramref name="program"/> in <paramref name="workingDirectory"/>, asserts
    /// success and returns its standard output. Where <paramref name="isolated"/>, its global
    /// packages folder is the test's own (packing restores the checkout's projects as they are).</summary>
    string Run(string program, string workingDirectory, bool isolated, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        foreach (var a in args) start.ArgumentList.Add(a);
        // `dotnet test` hands its MSBuild's locations down; a child build must find its own.
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(name);
        if (isolated) start.Environment["NUGET_PACKAGES"] = dir.File("packages");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10))) { p.Kill(entireProcessTree: true); throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in 10 minutes"); }
        Assert.True(p.ExitCode == 0, $"{program} {string.Join(' ', args)}: exit code {p.ExitCode}\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }
}
