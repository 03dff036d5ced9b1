using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class AdafactorTests(GpuFixture f) : GpuTest(f)
{
    // Unfactored (min dim < 128), factored with wide, tall and square shapes (the tie rule).
    [Theory]
    [InlineData(7, 33)]
    [InlineData(100, 64)]
    [InlineData(129, 300)]
    [InlineData(300, 129)]
    [InlineData(128, 128)]
    public void ThreeStepsMatchReference(int rows, int cols)
    {
        var s = new AdafactorSettings();
        int n = rows * cols;
        var p = Check.Random(n, 1, 0.5f);
        var state = new float[s.StateLength(rows, cols)];
        using var gp = GpuBuffer.From<float>(Ctx, p);
        using var gg = new GpuBuffer(Ctx, n * 4, "grad");
        using var gs = GpuBuffer.From<float>(Ctx, state);
        using var gy = new GpuBuffer(Ctx, n * 4, "update");
        using var graph = new CommandGraph(Ctx);
        AdafactorKernel.Step(graph, gp, gg, gs, gy, rows, cols, s);
        for (int step = 0; step < 3; step++)
        {
            // Gradients of very different scales, so clipping and the second moment both matter.
            var g = Check.Random(n, 10 + step, step == 1 ? 50f : 0.01f);
            gg.Upload<float>(g);
            graph.Run();
            AdafactorReference.Step(p, g, state, rows, cols, s);
        }
        // fp32 on the device against double in the reference: rsqrt and the long sums differ
        // by a few ulps; 1e-5 of the largest parameter is far below docs/numerics.md's 1e-3.
        Check.Close(p, gp.Download<float>(), 1e-5, "parameter");
        Assert.Equal(3u, BitConverter.SingleToUInt32Bits(gs.Download<float>()[0]));
    }

    [Fact]
    public void SettingsTheUpdateCannotUseAreRefused()
    {
        new AdafactorSettings().Validate();
        new AdafactorSettings { DecayRate = 0, WeightDecay = 0, MinDimToFactor = 1 }.Validate();
        var bad = new (AdafactorSettings Settings, string Property)[]
        {
            (new() { LearningRate = float.NaN }, "LearningRate"),
            (new() { LearningRate = float.PositiveInfinity }, "LearningRate"),
            (new() { LearningRate = 0 }, "LearningRate"),
            (new() { DecayRate = -0.1f }, "DecayRate"),
            (new() { ClippingThreshold = 0 }, "ClippingThreshold"),
            (new() { WeightDecay = float.NaN }, "WeightDecay"),
            (new() { WeightDecay = 1 }, "WeightDecay"),
            (new() { Epsilon1 = 0 }, "Epsilon1"),
            (new() { MinDimToFactor = 0 }, "MinDimToFactor"),
        };
        foreach (var (settings, property) in bad)
            Assert.StartsWith($"{property} must be", Assert.Throws<ArgumentException>(() => settings.Validate()).Message);
        Assert.StartsWith("--lr must be", Assert.Throws<ArgumentException>(() => bad[0].Settings.Validate(_ => "--lr")).Message);
    }

    [Fact]
    public void FirstStepIsSignTimesLrWhenUnclipped()
    {
        // At t = 0, beta = 0 so v = g² and y = g/|g| = ±1 (rms 1, no clipping):
        // P1 = (1 - wd)·P0 - lr·sign(g). A closed form, independent of the reference.
        var s = new AdafactorSettings();
        float[] p = [1f, -2f, 0.5f];
        float[] g = [0.3f, -4f, 1e-3f];
        var state = new float[s.StateLength(1, 3)];
        AdafactorReference.Step(p, g, state, 1, 3, s);
        Assert.Equal(1f * (1 - 1e-5f) - 0.3f, p[0], 5);
        Assert.Equal(-2f * (1 - 1e-5f) + 0.3f, p[1], 5);
        Assert.Equal(0.5f * (1 - 1e-5f) - 0.3f, p[2], 5);
    }
}
