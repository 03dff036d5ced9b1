using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class RmsNormTests(GpuFixture f) : GpuTest(f)
{
    const float Eps = 1e-6f;

    public static TheoryData<int, int> Shapes => RowShapes.Covering();

    public static TheoryData<int, int, bool> ShapesAndAccumulate()
    {
        var data = new TheoryData<int, int, bool>();
        foreach (var (rows, dim) in RowShapes.CoveringPairs())
            foreach (bool accumulate in new[] { false, true })
                data.Add(rows, dim, accumulate);
        return data;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void ForwardMatchesReference(int rows, int dim)
    {
        var x = Check.Random(rows * dim, 1, 3f);
        var w = Check.Random(dim, 2);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gw = GpuBuffer.From<float>(Ctx, w);
        using var gy = new GpuBuffer(Ctx, rows * dim * 4L);
        using (var g = new CommandGraph(Ctx))
        {
            RmsNormKernel.Forward(g, gx, gw, gy, rows, dim, Eps);
            g.Run();
        }
        var y = new float[rows * dim];
        RmsNormReference.Forward<float>(x, w, y, rows, dim, Eps);
        // An fp32 sum of at most 300 squares and one inversesqrt: a few ulp.
        Check.Close(y, gy.Download<float>(), 1e-5, "rmsnorm");
    }

    public static TheoryData<ActivationPrecision, int, int> HalfStoragesAndShapes()
    {
        var data = new TheoryData<ActivationPrecision, int, int>();
        foreach (var p in new[] { ActivationPrecision.Bf16, ActivationPrecision.Fp16 })
            foreach (var (rows, dim) in RowShapes.CoveringPairs())
                data.Add(p, rows, dim);
        return data;
    }

    /// <summary>The forward with y stored as <paramref name="p"/> beside the fp32 forward of the
    /// same x and w: (16-bit y widened, fp32 y).</summary>
    (float[] Y, float[] Fp32) ForwardStored(float[] x, float[] w, int rows, int dim, ActivationPrecision p)
    {
        int n = rows * dim;
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gw = GpuBuffer.From<float>(Ctx, w);
        using var gy = StoredActivations.Output(Ctx, n, p, "y");
        using var gy32 = new GpuBuffer(Ctx, n * 4L, "fp32 y");
        using (var g = new CommandGraph(Ctx))
        {
            RmsNormKernel.Forward(g, gx, gw, gy, rows, dim, Eps);
            RmsNormKernel.Forward(g, gx, gw, gy32, rows, dim, Eps);
            g.Run();
        }
        return (StoredActivations.Download(gy, n), gy32.Download<float>());
    }

    [SkippableTheory, MemberData(nameof(HalfStoragesAndShapes))]
    public void ForwardStoresYInItsStorage(ActivationPrecision p, int rows, int dim)
    {
        var x = Check.Random(rows * dim, 1, 3f);
        var w = Check.Random(dim, 2);
        var (y, fp32) = ForwardStored(x, w, rows, dim, p);
        // x, w and the statistics are fp32 in both builds, so y is the fp32 kernel's y rounded
        // once as it is stored, to the bit.
        Check.BitIdentical(StoredActivations.Rounded(fp32, p), y, $"rmsnorm y as {p}");
        Assert.NotEqual(fp32, y);
        // The reference, rounded the same way: the fp32 kernel's few ulp may move a value across
        // a rounding boundary, one ulp of the storage.
        var expected = new float[rows * dim];
        RmsNormReference.Forward<float>(x, w, expected, rows, dim, Eps);
        Check.Close(StoredActivations.Rounded(expected, p), y, StoredActivations.Ulp(p) + 1e-5, $"rmsnorm y as {p} vs reference");
    }

    [SkippableTheory]
    [InlineData(ActivationPrecision.Bf16)]
    [InlineData(ActivationPrecision.Fp16)]
    public void ForwardBeyondFp16RangeSaturatesOnlyInFp16(ActivationPrecision p)
    {
        const int rows = 7, dim = 33;
        // Normed rows are of order one; a weight of 1e5 takes most of y past 65504.
        var x = Check.Random(rows * dim, 3, 3f);
        var w = Check.Random(dim, 4, 2e5f);
        var (y, _) = ForwardStored(x, w, rows, dim, p);
        var expected = new float[rows * dim];
        RmsNormReference.Forward<float>(x, w, expected, rows, dim, Eps);
        Assert.Contains(expected, v => Math.Abs(v) > 65520);
        Assert.All(y, v => Assert.True(float.IsFinite(v), $"rmsnorm y as {p} holds {v}"));
        Check.Close(StoredActivations.Rounded(expected, p), y, StoredActivations.Ulp(p) + 1e-5, $"rmsnorm y as {p} vs reference");
        if (p == ActivationPrecision.Fp16)
            for (int i = 0; i < y.Length; i++)
                if (Math.Abs(expected[i]) > 65520) Assert.Equal(Math.Sign(expected[i]) * 65504f, y[i]);
    }

    [SkippableFact]
    public void ForwardRefusesA16BitResidualStream()
    {
        // x is the residual stream, fp32 by design: a 16-bit one must not be read as floats.
        using var gx = StoredActivations.Upload(Ctx, Check.Random(7, 5), ActivationPrecision.Bf16, "x");
        using var gw = GpuBuffer.From<float>(Ctx, Check.Random(7, 6));
        using var gy = StoredActivations.Output(Ctx, 7, ActivationPrecision.Bf16, "y");
        using var g = new CommandGraph(Ctx);
        Assert.Throws<ArgumentException>(() => RmsNormKernel.Forward(g, gx, gw, gy, 1, 7, Eps));
    }

    [Theory, MemberData(nameof(ShapesAndAccumulate))]
    public void BackwardMatchesReference(int rows, int dim, bool accumulate)
    {
        var x = Check.Random(rows * dim, 3, 3f);
        var w = Check.Random(dim, 4);
        var dy = Check.Random(rows * dim, 5);
        // Without accumulation dx must only be written: NaN there would leak into the result.
        var dx = accumulate ? Check.Random(rows * dim, 6) : Enumerable.Repeat(float.NaN, rows * dim).ToArray();
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gw = GpuBuffer.From<float>(Ctx, w);
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var gdx = GpuBuffer.From<float>(Ctx, dx);
        using (var g = new CommandGraph(Ctx))
        {
            RmsNormKernel.Backward(g, gx, gw, gdy, gdx, rows, dim, Eps, accumulate);
            g.Run();
        }
        RmsNormReference.Backward<float>(x, w, dy, dx, rows, dim, Eps, accumulate);
        // Two fp32 sums of at most 300 terms, then a difference of two order-one terms.
        Check.Close(dx, gdx.Download<float>(), 1e-5, "rmsnorm backward");
    }

    [Theory]
    [InlineData(3, 7, 1e-6f)]
    [InlineData(2, 33, 0.5f)] // an eps comparable to mean(x²) shows where eps enters the gradient
    public void BackwardReferenceMatchesFiniteDifferences(int rows, int dim, float eps)
    {
        var x = FiniteDifference.ToDouble(Check.Random(rows * dim, 7, 2f));
        var w = FiniteDifference.ToDouble(Check.Random(dim, 8));
        var dy = FiniteDifference.ToDouble(Check.Random(rows * dim, 9));
        var y = new double[rows * dim];
        var fd = FiniteDifference.Gradient(x, xs =>
        {
            RmsNormReference.Forward<double>(xs, w, y, rows, dim, eps);
            return FiniteDifference.Dot(y, dy);
        });
        var dx = new double[rows * dim];
        RmsNormReference.Backward<double>(x, w, dy, dx, rows, dim, eps, accumulate: false);
        // Central differences in double with h = 1e-6: truncation ~h², rounding ~1e-16·|loss|/h,
        // both below 1e-9 for these order-one losses.
        Assert.True(FiniteDifference.MaxRelativeError(fd, dx) <= 1e-7, "rmsnorm backward vs finite differences");
    }
}
