using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using Perfolizer.Horology;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace VkPrompt.Bench;

static class BenchConfig
{
    /// <summary>The default config plus the GFLOP/s and GB/s columns; with <paramref name="shortJob"/>,
    /// also the short job every benchmark runs under unless the command line names another.</summary>
    public static IConfig Create(bool shortJob)
    {
        var config = DefaultConfig.Instance
            .AddColumn(ThroughputColumn.Gflops, ThroughputColumn.Gbps)
            // Case names carry the shapes; the default cuts them at 20 characters.
            .WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(80));
        if (!shortJob) return config;
        // One op on lavapipe takes up to seconds, a GPU replay microseconds: the pilot stage picks
        // how many calls fill a 250 ms iteration (down to one for the slow ones: no unrolling and
        // no minimum of four), and three measured iterations bound the suite's time. No warm-up
        // iteration: every global setup already runs its op once, and the jitting stage again. In process: no
        // separate benchmark project to build, and the device is driven from here either way.
        var job = Job.Default
            .WithId("Short")
            .WithStrategy(RunStrategy.Throughput)
            .WithLaunchCount(1)
            .WithWarmupCount(0)
            .WithIterationCount(3)
            .WithIterationTime(TimeInterval.FromMilliseconds(250))
            .WithUnrollFactor(1)
            .WithMinInvokeCount(1)
            // A whole case may take minutes on lavapipe (the inference re-run baseline); the
            // in-process default of 5 minutes would abort the run.
            .WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(30), logOutput: true));
        return config.AddJob(job);
    }
}
