using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

public sealed class ReluTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int> Sizes => new(Check.AwkwardSizes);

    [Theory, MemberData(nameof(Sizes))]
    public void ForwardMatchesReference(int n)
    {
        var x = Check.Random(n, 1);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = new GpuBuffer(Ctx, n * 4L, "y");
        using (var g = new CommandGraph(Ctx))
        {
            ReluKernel.Forward(g, gx, gy, n);
            g.Run();
        }
        var y = new float[n];
        ReluReference.Forward<float>(x, y, n);
        // Exact: a comparison and a copy, no arithmetic.
        Check.Close(y, gy.Download<float>(), 0, "relu");
    }

    [Theory, MemberData(nameof(Sizes))]
    public void BackwardMatchesReference(int n)
    {
        var x = Check.Random(n, 3);
        var dy = Check.Random(n, 4);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var gdx = new GpuBuffer(Ctx, n * 4L, "dx");
        using (var g = new CommandGraph(Ctx))
        {
            ReluKernel.Backward(g, gx, gdy, gdx, n);
            g.Run();
        }
        var dx = new float[n];
        ReluReference.Backward<float>(x, dy, dx, n);
        // Exact: selects dy or 0.
        Check.Close(dx, gdx.Download<float>(), 0, "relu backward");
    }

    [Fact]
    public void NaNPassesThroughForward()
    {
        float[] x = [float.NaN, -0.5f, 2f];
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = new GpuBuffer(Ctx, 12, "y");
        using (var g = new CommandGraph(Ctx))
        {
            ReluKernel.Forward(g, gx, gy, 3);
            g.Run();
        }
        Assert.Equal([float.NaN, 0f, 2f], gy.Download<float>());
    }

    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        const int n = 129;
        const double h = 1e-6;
        var x = FiniteDifference.ToDouble(Check.Random(n, 5));
        var w = FiniteDifference.ToDouble(Check.Random(n, 6));
        // Finite differences are meaningless across the kink at 0; no sample lies that close.
        Assert.All(x, v => Assert.True(Math.Abs(v) > 10 * h));
        var numeric = FiniteDifference.Gradient(x, p =>
        {
            var y = new double[n];
            ReluReference.Forward<double>(p, y, n);
            return FiniteDifference.Dot(w, y);
        }, h);
        var analytic = new double[n];
        ReluReference.Backward<double>(x, w, analytic, n);
        // Piecewise linear, so only rounding of the differences remains (~1e-16 / h).
        Assert.True(FiniteDifference.MaxRelativeError(numeric, analytic) < 1e-8);
    }

    const float Rate = 0.1f;
    const uint Seed = 99, Stream = 3;

    /// <summary>Forward and backward on the GPU with the dropout fused, and as the plain kernels
    /// with DropoutKernel on y after the forward and on dy before the backward: y and dx of each.</summary>
    ((float[] Y, float[] Dx) Fused, (float[] Y, float[] Dx) Composed) FusedAndComposed(float[] x, float[] dy, float rate)
    {
        int n = x.Length;
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var fusedY = new GpuBuffer(Ctx, n * 4L, "fused y");
        using var fusedDx = new GpuBuffer(Ctx, n * 4L, "fused dx");
        using var composedY = new GpuBuffer(Ctx, n * 4L, "composed y");
        using var composedDy = GpuBuffer.From<float>(Ctx, dy);
        using var composedDx = new GpuBuffer(Ctx, n * 4L, "composed dx");
        using (var g = new CommandGraph(Ctx))
        {
            var mask = new DropoutMask<GpuBuffer>(rate, seed, Stream);
            ReluKernel.Forward(g, gx, fusedY, n, mask);
            ReluKernel.Backward(g, gx, gdy, fusedDx, n, mask);
            ReluKernel.Forward(g, gx, composedY, n);
            DropoutKernel.Forward(g, composedY, n, rate, seed, Stream);
            DropoutKernel.Backward(g, composedDy, n, rate, seed, Stream);
            ReluKernel.Backward(g, gx, composedDy, composedDx, n);
            g.Run();
        }
        return ((fusedY.Download<float>(), fusedDx.Download<float>()), (composedY.Download<float>(), composedDx.Download<float>()));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void DropoutIsDropoutKernelsMaskBothWays(int n)
    {
        var x = Check.Random(n, 7);
        var dy = Check.Random(n, 8);
        var (fused, composed) = FusedAndComposed(x, dy, Rate);
        Check.BitIdentical(composed.Y, fused.Y, "relu y with dropout");
        Check.BitIdentical(composed.Dx, fused.Dx, "relu dx with dropout");

        // The CPU reference path (CpuBackend): the reference relu and DropoutReference in turn,
        // exact like the relu alone (one float product per kept element).
        var y = new float[n];
        ReluReference.Forward<float>(x, y, n);
        DropoutReference.Forward<float>(y, n, Rate, Seed, Stream);
        var droppedDy = (float[])dy.Clone();
        DropoutReference.Backward<float>(droppedDy, n, Rate, Seed, Stream);
        var dx = new float[n];
        ReluReference.Backward<float>(x, droppedDy, dx, n);
        Check.BitIdentical(y, fused.Y, "relu y with dropout vs reference");
        Check.BitIdentical(dx, fused.Dx, "relu dx with dropout vs reference");
    }

    [Fact]
    public void RateZeroIsThePlainActivation()
    {
        const int n = 300;
        var (fused, composed) = FusedAndComposed(Check.Random(n, 9), Check.Random(n, 10), rate: 0f);
        Check.BitIdentical(composed.Y, fused.Y, "relu y at rate 0");
        Check.BitIdentical(composed.Dx, fused.Dx, "relu dx at rate 0");
    }
}
