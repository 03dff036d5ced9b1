using System.Diagnostics;

namespace VkPrompt.Runtime;

/// <summary>GPU time of one op alone, measured as it runs inside a training step: what
/// <c>vkprompt bench matmul</c> and <see cref="Kernels.MatMulTuner"/> time products with.</summary>
internal static class DispatchTimer
{
    /// <summary>Records <paramref name="reps"/> calls of <paramref name="append"/> back to back in
    /// one submission (each dispatch between its own timestamps; barriers between them where they
    /// share a written buffer, as between dependent ops of a step), runs it untimed until at least
    /// <paramref name="warmupMs"/> have passed (once at least), then once timed. Returns each op's
    /// milliseconds and its label (the shader a dispatch ran); where the device records no
    /// timestamps, the wall-clock time of the timed run over <paramref name="reps"/> for each, and
    /// no labels.</summary>
    /// <remarks>Timed with one dispatch per submission and a wait after each, an H100 ran most
    /// large products up to 6 times slower than inside a training step (t5-base: 1,814 ms of
    /// products per step against 437 ms in the step's own profile), some speeding up partway
    /// through the reps: most likely its clocks (345 MHz idle, 1,980 under load) stayed down.
    /// Back to back in one submission the same products summed to 426 ms, with or without a
    /// longer warm-up.</remarks>
    public static (IReadOnlyList<double> Ms, IReadOnlyList<string>? Labels) Repeat(GpuContext ctx, Action<CommandGraph> append, int reps, double warmupMs)
    {
        using var graph = new CommandGraph(ctx, profiling: true);
        for (int i = 0; i < reps; i++) append(graph);
        var warm = Stopwatch.StartNew();
        do graph.Run(); while (warm.Elapsed.TotalMilliseconds < warmupMs);
        var clock = Stopwatch.StartNew();
        graph.Run();
        double wall = clock.Elapsed.TotalMilliseconds;
        if (!graph.Profiling)
            return (Enumerable.Repeat(wall / reps, reps).ToList(), null);
        return (graph.Timings.Select(t => t.Milliseconds).ToList(), graph.Timings.Select(t => t.Label).ToList());
    }

    /// <summary>The middle value, or the mean of the middle two.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        if (sorted.Count == 0) throw new ArgumentException("no values", nameof(values));
        int mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
