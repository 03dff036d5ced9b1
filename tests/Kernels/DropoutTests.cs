using System.Runtime.InteropServices;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class DropoutTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int> Sizes => new(Check.AwkwardSizes);

    const float Rate = 0.1f;
    const uint Seed = 1234, Stream = 7;

    [Theory, MemberData(nameof(Sizes))]
    public void ForwardIsBitIdenticalToReference(int n)
    {
        var x = Check.Random(n, 1);
        var gpu = RunForward(x, Rate, Seed, Stream);
        DropoutReference.Forward<float>(x, n, Rate, Seed, Stream);
        // Bit-identical: the same integer mask test and one multiplication by the same float.
        Assert.Equal(Bits(x), Bits(gpu));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void BackwardAppliesTheForwardMask(int n)
    {
        var dy = Check.Random(n, 2);
        using var gdx = GpuBuffer.From<float>(Ctx, dy);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using (var g = new CommandGraph(Ctx))
        {
            DropoutKernel.Backward(g, gdx, n, Rate, seed, Stream);
            g.Run();
        }
        var dx = gdx.Download<float>();
        var expected = (float[])dy.Clone();
        DropoutReference.Backward<float>(expected, n, Rate, Seed, Stream);
        Assert.Equal(Bits(expected), Bits(dx));
        // The mask is the forward's: ones through the forward zero exactly the same elements.
        var ones = RunForward(Enumerable.Repeat(1f, n).ToArray(), Rate, Seed, Stream);
        float scale = DropoutKernel.KeepScale(Rate);
        for (int i = 0; i < n; i++)
            Assert.Equal(ones[i] == 0f ? 0f : dy[i] * scale, dx[i]);
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    [InlineData(0.9f)]
    public void KeptFractionIsOneMinusRate(float rate)
    {
        const int n = 300 * 300;
        var y = RunForward(Enumerable.Repeat(1f, n).ToArray(), rate, Seed, Stream);
        double kept = y.Count(v => v != 0f) / (double)n;
        // Binomial standard deviation sqrt(r(1-r)/n) <= 0.0017 here; 5 of them.
        Assert.InRange(kept, 1 - rate - 0.0083, 1 - rate + 0.0083);
        Assert.All(y, v => Assert.True(v == 0f || v == DropoutKernel.KeepScale(rate)));
    }

    [Fact]
    public void StreamsAndSeedsGiveIndependentMasksAndRepeatExactly()
    {
        const int n = 300 * 300;
        var ones = Enumerable.Repeat(1f, n).ToArray();
        var a = RunForward(ones, 0.5f, Seed, Stream);
        Assert.Equal(a, RunForward(ones, 0.5f, Seed, Stream));
        foreach (var other in new[] { RunForward(ones, 0.5f, Seed, Stream + 1), RunForward(ones, 0.5f, Seed + 1, Stream) })
        {
            // Independent halves agree on about half the elements (sd 0.0017).
            double agree = Enumerable.Range(0, n).Count(i => (a[i] == 0) == (other[i] == 0)) / (double)n;
            Assert.InRange(agree, 0.49, 0.51);
        }
    }

    [Fact]
    public void RateZeroAppendsNothing()
    {
        using var gx = GpuBuffer.From<float>(Ctx, [1f, 2f]);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var g = new CommandGraph(Ctx);
        DropoutKernel.Forward(g, gx, 2, 0f, seed, Stream);
        Assert.Equal(0, g.DispatchCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => DropoutKernel.Forward(g, gx, 2, 1f, seed, Stream));
    }

    /// <summary>Into a buffer of its own, the dropout writes what it would in place, past n
    /// nothing, and leaves its input as it was; at rate 0 the output is a copy.</summary>
    [Theory, InlineData(0.1f, 300), InlineData(0f, 37)]
    public void OutOfPlaceMatchesInPlaceAndKeepsTheInput(float rate, int n)
    {
        var x = Check.Random(n + 5, 3);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(-7f, n + 5).ToArray());
        using var gdx = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(-7f, n + 5).ToArray());
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using (var g = new CommandGraph(Ctx))
        {
            DropoutKernel.Forward(g, gx, n, rate, seed, Stream, gy);
            DropoutKernel.Backward(g, gx, n, rate, seed, Stream, gdx);
            g.Run();
        }
        var expected = (float[])x.Clone();
        if (rate > 0) DropoutReference.Forward<float>(expected, n, rate, Seed, Stream);
        for (int i = n; i < n + 5; i++) expected[i] = -7f;
        Assert.Equal(Bits(expected), Bits(gy.Download<float>()));
        Assert.Equal(Bits(expected), Bits(gdx.Download<float>()));
        Assert.Equal(Bits(x), Bits(gx.Download<float>()));
    }

    [Fact]
    public void PhiloxMatchesTheRandom123KnownAnswers()
    {
        // kat_vectors of Random123 1.09 for philox2x32_10.
        Assert.Equal((0xff1dae59u, 0x6cd10df2u), DropoutReference.Philox2x32_10(0, 0, 0));
        Assert.Equal((0x2c3f628bu, 0xab4fd7adu), DropoutReference.Philox2x32_10(0xffffffff, 0xffffffff, 0xffffffff));
        Assert.Equal((0xdd7ce038u, 0xf62a4c12u), DropoutReference.Philox2x32_10(0x243f6a88, 0x85a308d3, 0x13198a2e));
    }

    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        const int n = 129;
        var x = FiniteDifference.ToDouble(Check.Random(n, 3));
        var w = FiniteDifference.ToDouble(Check.Random(n, 4));
        var numeric = FiniteDifference.Gradient(x, p =>
        {
            var y = (double[])p.Clone();
            DropoutReference.Forward<double>(y, n, Rate, Seed, Stream);
            return FiniteDifference.Dot(w, y);
        });
        var analytic = (double[])w.Clone();
        DropoutReference.Backward<double>(analytic, n, Rate, Seed, Stream);
        // Linear for a fixed mask, so only rounding of the differences remains (~1e-16 / h).
        Assert.True(FiniteDifference.MaxRelativeError(numeric, analytic) < 1e-8);
    }

    float[] RunForward(float[] x, float rate, uint seed, uint stream)
    {
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gseed = GpuBuffer.From<uint>(Ctx, [seed]);
        using (var g = new CommandGraph(Ctx))
        {
            DropoutKernel.Forward(g, gx, x.Length, rate, gseed, stream);
            g.Run();
        }
        return gx.Download<float>();
    }

    static int[] Bits(float[] a) => MemoryMarshal.Cast<float, int>(a).ToArray();

    [Fact]
    public void ReplayWithANewSeedDrawsANewMask()
    {
        // A recorded training step is replayed with the seed buffer rewritten: the mask must follow.
        var ones = Enumerable.Repeat(1f, 4096).ToArray();
        using var gx = GpuBuffer.From<float>(Ctx, ones);
        using var seed = GpuBuffer.From<uint>(Ctx, [1u]);
        using var g = new CommandGraph(Ctx);
        DropoutKernel.Forward(g, gx, ones.Length, Rate, seed, Stream);
        g.Run();
        var first = gx.Download<float>();
        gx.Upload<float>(ones);
        seed.Upload<uint>([2u]);
        g.Run();
        var second = gx.Download<float>();
        var expected = (float[])ones.Clone();
        DropoutReference.Forward<float>(expected, ones.Length, Rate, 2u, Stream);
        Assert.Equal(Bits(expected), Bits(second));
        Assert.NotEqual(Bits(first), Bits(second));
    }
}
