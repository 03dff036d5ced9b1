using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

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
