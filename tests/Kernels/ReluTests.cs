using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
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

    const ActivationPrecision F32 = ActivationPrecision.Fp32, Bf16 = ActivationPrecision.Bf16, F16 = ActivationPrecision.Fp16;

    /// <summary>Storages of (x, y): each 16-bit format throughout, a 16-bit x into fp32, fp32
    /// into each 16-bit y, and bf16 into fp16.</summary>
    public static TheoryData<ActivationPrecision, ActivationPrecision, int> StoragesAndSizes()
    {
        var data = new TheoryData<ActivationPrecision, ActivationPrecision, int>();
        foreach (var (sx, sy) in new[] { (Bf16, Bf16), (F16, F16), (Bf16, F32), (F32, Bf16), (F32, F16), (Bf16, F16) })
            foreach (var n in new[] { 7, 300 }) data.Add(sx, sy, n);
        return data;
    }

    public static TheoryData<ActivationPrecision> HalfStorages => new(Bf16, F16);

    /// <summary>Forward (x as <paramref name="sx"/>, y as <paramref name="sy"/>) and backward (x
    /// as <paramref name="sx"/>, dy and dx fp32), with the dropout mask of <paramref name="rate"/>:
    /// y (widened) and dx.</summary>
    (float[] Y, float[] Dx) RunStored(float[] x, float[] dy, ActivationPrecision sx, ActivationPrecision sy, float rate = 0)
    {
        int n = x.Length;
        using var gx = StoredActivations.Upload(Ctx, x, sx, "x");
        using var gy = StoredActivations.Output(Ctx, n, sy, "y");
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var gdx = new GpuBuffer(Ctx, n * 4L, "dx");
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using (var g = new CommandGraph(Ctx))
        {
            var mask = new DropoutMask<GpuBuffer>(rate, seed, Stream);
            ReluKernel.Forward(g, gx, gy, n, mask);
            ReluKernel.Backward(g, gx, gdy, gdx, n, mask);
            g.Run();
        }
        return (StoredActivations.Download(gy, n), gdx.Download<float>());
    }

    /// <summary>The reference forward and backward on x rounded to <paramref name="sx"/>, with
    /// dropout of <paramref name="rate"/>, y rounded to <paramref name="sy"/>.</summary>
    static (float[] Y, float[] Dx) Reference(float[] x, float[] dy, ActivationPrecision sx, ActivationPrecision sy, float rate = 0)
    {
        int n = x.Length;
        var rx = StoredActivations.Rounded(x, sx);
        var y = new float[n];
        ReluReference.Forward<float>(rx, y, n);
        DropoutReference.Forward<float>(y, n, rate, Seed, Stream);
        var droppedDy = (float[])dy.Clone();
        DropoutReference.Backward<float>(droppedDy, n, rate, Seed, Stream);
        var dx = new float[n];
        ReluReference.Backward<float>(rx, droppedDy, dx, n);
        return (StoredActivations.Rounded(y, sy), dx);
    }

    [SkippableTheory, MemberData(nameof(StoragesAndSizes))]
    public void ReadsAndStoresItsStorages(ActivationPrecision sx, ActivationPrecision sy, int n)
    {
        // Scale 3 takes some of x past fp16's subnormals and bf16's 8 bits alike.
        var x = Check.Random(n, 11, 3f);
        var dy = Check.Random(n, 12);
        var (y, dx) = RunStored(x, dy, sx, sy);
        var expected = Reference(x, dy, sx, sy);
        // A comparison and at most one rounding each way, exactly as the reference rounds.
        Check.BitIdentical(expected.Y, y, $"relu y, x {sx}, y {sy}");
        Check.BitIdentical(expected.Dx, dx, $"relu dx, x {sx}");
        // Rounding happened: the unrounded relu differs.
        var unrounded = new float[n];
        ReluReference.Forward<float>(x, unrounded, n);
        Assert.NotEqual(unrounded, y);
    }

    [SkippableTheory, MemberData(nameof(HalfStorages))]
    public void DropoutWorksOnStoredActivations(ActivationPrecision p)
    {
        const int n = 300;
        var x = Check.Random(n, 13);
        var dy = Check.Random(n, 14);
        var (y, dx) = RunStored(x, dy, p, p, Rate);
        var expected = Reference(x, dy, p, p, Rate);
        // The mask's scaling is one fp32 product, rounded once as y is stored.
        Check.BitIdentical(expected.Y, y, $"relu y as {p} with dropout");
        Check.BitIdentical(expected.Dx, dx, $"relu dx from {p} with dropout");
    }

    [SkippableFact]
    public void ADropoutSeedMustBeAPlainBuffer()
    {
        // The seed binding admits a 16-bit placeholder when there is no dropout (ReluKernel), so
        // the command graph would let a 16-bit seed through; the mask's check does not.
        using var gx = StoredActivations.Upload(Ctx, Check.Random(7, 15), Bf16, "x");
        using var gy = StoredActivations.Output(Ctx, 7, Bf16, "y");
        using var seed = StoredActivations.Upload(Ctx, [1f], Bf16, "seed");
        using var g = new CommandGraph(Ctx);
        var e = Assert.Throws<ArgumentException>(() => ReluKernel.Forward(g, gx, gy, 7, new DropoutMask<GpuBuffer>(Rate, seed, Stream)));
        Assert.Contains("plain buffer", e.Message);
    }

    [SkippableTheory, MemberData(nameof(HalfStorages))]
    public void NaNPassesAndBf16BeyondFp16RangeSaturates(ActivationPrecision sy)
    {
        // From bf16, whose range is fp32's, into y: fp16 keeps ±65504 (relu leaves only +), bf16
        // the values, and a NaN stays a NaN in both.
        float[] x = [float.NaN, -0.5f, 2f, 1e5f, -1e5f, 3e38f, 65504f];
        var (y, _) = RunStored(x, new float[x.Length], Bf16, sy);
        float[] expected = sy == F16 ? [float.NaN, 0f, 2f, 65504f, 0f, 65504f, 65504f] : [float.NaN, 0f, 2f, 99840f, 0f, 3.00405527E+38f, 65536f];
        Assert.Equal(expected, y);
        Assert.Equal(expected, Reference(x, new float[x.Length], Bf16, sy).Y);
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

    /// <summary>The backward reading the forward's output, dropped, in place of its input (what
    /// T5Pass keeps, MatMulEpilogue.Relu) gives the same dx bit for bit, in each storage: y &gt; 0
    /// exactly where x &gt; 0 and the mask kept the element, and where it dropped it dy's mask
    /// makes dx 0 either way. x holds what could tell them apart: -0, NaN, infinities, the
    /// smallest fp32 subnormal, values fp16 saturates or rounds to 0.</summary>
    [SkippableTheory]
    [InlineData(ActivationPrecision.Fp32), InlineData(ActivationPrecision.Bf16), InlineData(ActivationPrecision.Fp16)]
    public void BackwardFromTheDroppedOutputIsBackwardFromTheInput(ActivationPrecision storage)
    {
        float[] special = [-0f, 0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, -float.Epsilon, 1e-30f, 7e4f, -7e4f, 3e-8f];
        var x = special.Concat(Check.Random(300, 15)).ToArray();
        int n = x.Length;
        var dy = Check.Random(n, 16);
        using var gx = StoredActivations.Upload(Ctx, x, storage, "x");
        using var gy = StoredActivations.Output(Ctx, n, storage, "y");
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var fromInput = new GpuBuffer(Ctx, n * 4L, "dx from x");
        using var fromOutput = new GpuBuffer(Ctx, n * 4L, "dx from y");
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using (var g = new CommandGraph(Ctx))
        {
            var mask = new DropoutMask<GpuBuffer>(Rate, seed, Stream);
            ReluKernel.Forward(g, gx, gy, n, mask);
            ReluKernel.Backward(g, gx, gdy, fromInput, n, mask);
            ReluKernel.Backward(g, gy, gdy, fromOutput, n, mask);
            g.Run();
        }
        var expected = fromInput.Download<float>();
        Check.BitIdentical(expected, fromOutput.Download<float>(), $"relu dx from the dropped y, {storage.Name()}");
        // Both kinds of zero occur: where x <= 0 and where the mask dropped a positive x.
        var rx = StoredActivations.Rounded(x, storage);
        Assert.Contains(Enumerable.Range(0, n), i => rx[i] > 0 && expected[i] == 0);
        Assert.Contains(Enumerable.Range(0, n), i => rx[i] > 0 && expected[i] != 0);
    }
}
