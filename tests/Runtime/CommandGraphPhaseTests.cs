using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>Phase scopes tag each op, and a profiled run's timings carry the tags.</summary>
public sealed class CommandGraphPhaseTests(GpuFixture f) : GpuTest(f)
{
    [Fact]
    public void TimingsCarryThePathOfTheOpenPhases()
    {
        using var x = GpuBuffer.From<float>(Ctx, new float[64]);
        using var y = GpuBuffer.From<float>(Ctx, new float[64]);
        using var g = new CommandGraph(Ctx, profiling: true);
        Assert.True(g.Profiling, "lavapipe and every GPU VkPrompt targets record timestamps on the compute queue");
        AddKernel.Forward(g, x, y, 64);
        using (g.Phase("forward"))
        {
            AddKernel.Forward(g, x, y, 64);
            using (g.Phase("inner")) g.Fill(y);
            g.Copy(x, y);
        }
        g.Run();
        Assert.Equal(["", "forward", "forward/inner", "forward"], g.Timings.Select(t => t.Phase));
        Assert.Equal(["add", "add", "fill", "copy"], g.Timings.Select(t => t.Label));
        Assert.All(g.Timings, t => Assert.True(t.Milliseconds >= 0));
    }

    [Fact]
    public void AnOuterPhaseCannotCloseBeforeAnInnerOne()
    {
        using var g = new CommandGraph(Ctx);
        var outer = g.Phase("outer");
        var inner = g.Phase("inner");
        Assert.Throws<InvalidOperationException>(outer.Dispose);
        inner.Dispose();
        outer.Dispose();
        outer.Dispose();
    }

    [Theory]
    [InlineData("")]
    [InlineData("a/b")]
    public void APhaseNameIsOneNonEmptySegment(string name)
    {
        using var g = new CommandGraph(Ctx);
        Assert.Throws<ArgumentException>(() => g.Phase(name));
    }

    [Fact]
    public void NoPhaseOpensOnARecordedGraph()
    {
        using var y = GpuBuffer.From<float>(Ctx, new float[4]);
        using var g = new CommandGraph(Ctx);
        g.Fill(y);
        g.Run();
        Assert.Throws<InvalidOperationException>(() => g.Phase("late"));
    }
}
