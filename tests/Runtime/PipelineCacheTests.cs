using System.Text.RegularExpressions;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;
using Xunit.Abstractions;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>The on-disk pipeline cache: written when one context ends, read by the next one
/// on the same device and driver, and never a reason to fail when the file is damaged.</summary>
public sealed partial class PipelineCacheTests(ITestOutputHelper output) : IDisposable
{
    readonly string directory = Directory.CreateTempSubdirectory("vkprompt-pipeline-cache-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    sealed record Session(string CacheKey, TimeSpan PipelineCreation, IReadOnlyList<string> Log);

    /// <summary>One context's life with the cache directory: create it, build and run the add
    /// kernel, dispose it (which saves the cache).</summary>
    Session RunContext()
    {
        var log = new List<string>();
        var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = directory, Validation = true, Log = log.Add });
        try
        {
            using var x = GpuBuffer.From<float>(ctx, [1f, 2f, 3f]);
            using var y = GpuBuffer.From<float>(ctx, [10f, 20f, 30f]);
            using (var g = new CommandGraph(ctx))
            {
                AddKernel.Forward(g, x, y, 3);
                g.Run();
            }
            Assert.Equal([11f, 22f, 33f], x.Download<float>());
        }
        finally { ctx.Dispose(); }
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
        return new Session(ctx.Capabilities.PipelineCacheKey, ctx.PipelineCreationTime, log);
    }

    [GeneratedRegex(@"^pipeline cache: loaded (\d+) bytes")]
    private static partial Regex LoadedLine();

    static int BytesLoaded(Session s) =>
        s.Log.Select(l => LoadedLine().Match(l)).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value)).SingleOrDefault();

    [Fact]
    public void SecondContextLoadsWhatTheFirstSaved()
    {
        var first = RunContext();
        var file = Assert.Single(Directory.GetFiles(directory));
        Assert.Contains(first.CacheKey, Path.GetFileName(file));
        Assert.True(new FileInfo(file).Length > 0, $"{file} is empty");
        Assert.Equal(0, BytesLoaded(first));

        var second = RunContext();
        Assert.True(BytesLoaded(second) > 0, "the second context did not load the cache:\n" + string.Join("\n", second.Log));
        // Logged, not asserted: lavapipe and a warm driver cache can make both times alike.
        output.WriteLine($"pipeline creation: {first.PipelineCreation.TotalMilliseconds:F1} ms cold, {second.PipelineCreation.TotalMilliseconds:F1} ms from the cache file");
    }

    [Theory]
    [InlineData("random bytes")]
    [InlineData("truncated")]
    [InlineData("empty")]
    public void DamagedFileIsIgnored(string damage)
    {
        RunContext();
        var file = Assert.Single(Directory.GetFiles(directory));
        var valid = File.ReadAllBytes(file);
        File.WriteAllBytes(file, damage switch
        {
            "random bytes" => RandomBytes(valid.Length),
            "truncated" => valid[..Math.Min(16, valid.Length)],
            _ => [],
        });

        var session = RunContext();
        Assert.Contains(session.Log, l => l.StartsWith("pipeline cache: saved", StringComparison.Ordinal));
        Assert.True(new FileInfo(file).Length > 0, "the damaged file was not replaced by a good one");
    }

    static byte[] RandomBytes(int n)
    {
        var bytes = new byte[n];
        new Random(7).NextBytes(bytes);
        return bytes;
    }
}
