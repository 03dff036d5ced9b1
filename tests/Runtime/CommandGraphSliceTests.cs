using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>A command graph run in slices (<see cref="CommandGraph.Advance"/>): unmeasured ops
/// go one per slice, a run's slice timings are those of the last whole run only (not of a run
/// still being advanced, nor left over from an earlier run), and the result is the one submit's.</summary>
public sealed class CommandGraphSliceTests(GpuFixture f) : GpuTest(f)
{
    [SkippableFact]
    public void SlicesMeasureWholeRunsOnlyAndComputeTheSameResult()
    {
        Skip.IfNot(Ctx.Capabilities.TimestampsSupported, "the device has no timestamps");
        const int n = 4096, ops = 6;
        var x = Check.Random(n, 1);
        var y = Check.Random(n, 2);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = GpuBuffer.From<float>(Ctx, y);
        using var g = new CommandGraph(Ctx, profiling: false);
        for (int i = 0; i < ops; i++) AddKernel.Forward(g, gx, gy, n, 0.5f);

        // First run: nothing measured yet, so every op is a slice of its own.
        var first = g.Advance(1e9, []);
        Assert.Equal((0, 1, ops - 1, (double?)null), (first.FirstOp, first.Ops, first.OpsLeft, first.EstimatedMs));
        first.Ticket.Wait();
        Assert.Empty(g.SliceTimings);   // the run is not over: nothing is collected from it
        while (g.RunInProgress) g.Advance(1e9, []).Ticket.Wait();
        Assert.Equal(ops, g.SliceTimings.Count);
        Assert.All(g.SliceTimings, s => Assert.True(s.GpuMs >= 0 && s.Ops == 1));

        // Second run: all measured, a budget far above them takes the run in one slice.
        var second = g.Advance(1e9, []);
        Assert.Equal((ops, 0), (second.Ops, second.OpsLeft));
        Assert.NotNull(second.EstimatedMs);
        second.Ticket.Wait();
        Assert.Single(g.SliceTimings);

        // A whole submit without profiling records no timestamps: no timings, not the last run's.
        g.Run();
        Assert.Empty(g.SliceTimings);

        for (int r = 0; r < 3 * ops; r++) AddReference.Forward(x, y, 0.5f);
        Check.Close(x, gx.Download<float>(), 1e-6, "adds run whole and in slices");
    }
}
