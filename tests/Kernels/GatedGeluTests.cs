using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

public sealed class GatedGeluTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int> Sizes => new(Check.AwkwardSizes);

    // Pre-activations of a trained T5 FF layer mostly lie within a few units of 0; scale 6
    // covers both saturated tails of the gate as well as its curved middle.
    const float Scale = 6f;

    // The reference is evaluated in double, so this is the shader's own error: Vulkan lets
    // exp() be off by (3 + 2|x|) ulp, and a few float roundings follow. Lavapipe stays within
    // 3e-6 of the double result even element by element (in the far negative tail too).
    const double Tolerance = 1e-5;

    [Theory, MemberData(nameof(Sizes))]
    public void ForwardMatchesReference(int n)
    {
        var a = Check.Random(n, 1, Scale);
        var b = Check.Random(n, 2);
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gy = new GpuBuffer(Ctx, n * 4L, "y");
        using (var g = new CommandGraph(Ctx))
        {
            GatedGeluKernel.Forward(g, ga, gb, gy, n);
            g.Run();
        }
        var y = new float[n];
        GatedGeluReference.Forward<float>(a, b, y, n);
        Check.Close(y, gy.Download<float>(), Tolerance, "gated gelu");
    }

    [Theory, MemberData(nameof(Sizes))]
    public void BackwardMatchesReference(int n)
    {
        var a = Check.Random(n, 3, Scale);
        var b = Check.Random(n, 4);
        var dy = Check.Random(n, 5);
        var (da, db) = RunBackward(a, b, dy);
        var rda = new float[n];
        var rdb = new float[n];
        GatedGeluReference.Backward<float>(a, b, dy, rda, rdb, n);
        Check.Close(rda, da, Tolerance, "gated gelu da");
        Check.Close(rdb, db, Tolerance, "gated gelu db");
    }

    [Fact]
    public void HugeInputsStayFinite()
    {
        // Past |x| ~ 10 a tanh built from exponentials gives inf/inf, and x^3 overflows float
        // past ~7e12; the exact values there are x (or 0) and a derivative of 1 (or 0).
        float[] a = [10f, -10f, 11f, -11f, 50f, -50f, 1e4f, -1e4f, 1e13f, -1e13f, 1e20f, -1e20f, float.MaxValue, -float.MaxValue];
        var b = Enumerable.Repeat(1f, a.Length).ToArray();
        var dy = Enumerable.Repeat(1f, a.Length).ToArray();
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gy = new GpuBuffer(Ctx, a.Length * 4L, "y");
        using (var g = new CommandGraph(Ctx))
        {
            GatedGeluKernel.Forward(g, ga, gb, gy, a.Length);
            g.Run();
        }
        var (da, db) = RunBackward(a, b, dy);
        var y = gy.Download<float>();
        for (int i = 0; i < a.Length; i++)
        {
            float expectedY = a[i] > 0 ? a[i] : 0f;
            float expectedGrad = a[i] > 0 ? 1f : 0f;
            // At +-10 the gate differs from a step by ~1e-38 relative to x, far below 1 ulp.
            Assert.True(Math.Abs(y[i] - expectedY) <= 1e-6 * Math.Abs(a[i]), $"y({a[i]}) = {y[i]}");
            Assert.True(Math.Abs(db[i] - expectedY) <= 1e-6 * Math.Abs(a[i]), $"db({a[i]}) = {db[i]}");
            Assert.True(Math.Abs(da[i] - expectedGrad) <= 1e-6f, $"da({a[i]}) = {da[i]}");
            Assert.Equal(expectedY, GatedGeluReference.GeluTanh(a[i]), 1e-6f * Math.Abs(a[i]));
            Assert.Equal(expectedGrad, GatedGeluReference.GeluTanhDerivative(a[i]), 1e-6f);
        }
    }

    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        const int n = 129;
        var a = FiniteDifference.ToDouble(Check.Random(n, 6, Scale));
        var b = FiniteDifference.ToDouble(Check.Random(n, 7));
        var w = FiniteDifference.ToDouble(Check.Random(n, 8));
        double Loss(double[] pa, double[] pb)
        {
            var y = new double[n];
            GatedGeluReference.Forward<double>(pa, pb, y, n);
            return FiniteDifference.Dot(w, y);
        }
        var numericA = FiniteDifference.Gradient(a, p => Loss(p, b));
        var numericB = FiniteDifference.Gradient(b, p => Loss(a, p));
        var da = new double[n];
        var db = new double[n];
        GatedGeluReference.Backward<double>(a, b, w, da, db, n);
        // Central differences with h = 1e-6: truncation ~h^2 |f'''| plus rounding ~1e-16 / h.
        Assert.True(FiniteDifference.MaxRelativeError(numericA, da) < 1e-8, "da");
        Assert.True(FiniteDifference.MaxRelativeError(numericB, db) < 1e-8, "db");
    }

    [Fact]
    public void ReferenceMatchesTheTextbookFormula()
    {
        // The reference uses the logistic form; where 1 + tanh(u) does not cancel (x >= -3) the
        // textbook formula is accurate in double too, and the two must agree to rounding.
        const double c = 0.7978845608028654, k = 0.044715;
        for (double x = -3; x <= 12; x += 1.0 / 64)
        {
            double u = c * (x + k * x * x * x), t = Math.Tanh(u);
            double gelu = 0.5 * x * (1 + t);
            double grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x);
            Assert.Equal(gelu, GatedGeluReference.GeluTanh(x), 1e-14 * Math.Max(1, Math.Abs(x)));
            Assert.Equal(grad, GatedGeluReference.GeluTanhDerivative(x), 1e-14);
        }
    }

    const float Rate = 0.1f;
    const uint Seed = 99, Stream = 3;

    /// <summary>Forward and backward on the GPU with the dropout fused, and as the plain kernels
    /// with DropoutKernel on y after the forward and on dy before the backward: y, da and db of
    /// each.</summary>
    ((float[] Y, float[] Da, float[] Db) Fused, (float[] Y, float[] Da, float[] Db) Composed) FusedAndComposed(
        float[] a, float[] b, float[] dy, float rate)
    {
        int n = a.Length;
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var fusedY = new GpuBuffer(Ctx, n * 4L, "fused y");
        using var fusedDa = new GpuBuffer(Ctx, n * 4L, "fused da");
        using var fusedDb = new GpuBuffer(Ctx, n * 4L, "fused db");
        using var composedY = new GpuBuffer(Ctx, n * 4L, "composed y");
        using var composedDy = GpuBuffer.From<float>(Ctx, dy);
        using var composedDa = new GpuBuffer(Ctx, n * 4L, "composed da");
        using var composedDb = new GpuBuffer(Ctx, n * 4L, "composed db");
        using (var g = new CommandGraph(Ctx))
        {
            var mask = new DropoutMask<GpuBuffer>(rate, seed, Stream);
            GatedGeluKernel.Forward(g, ga, gb, fusedY, n, mask);
            GatedGeluKernel.Backward(g, ga, gb, gdy, fusedDa, fusedDb, n, mask);
            GatedGeluKernel.Forward(g, ga, gb, composedY, n);
            DropoutKernel.Forward(g, composedY, n, rate, seed, Stream);
            DropoutKernel.Backward(g, composedDy, n, rate, seed, Stream);
            GatedGeluKernel.Backward(g, ga, gb, composedDy, composedDa, composedDb, n);
            g.Run();
        }
        return ((fusedY.Download<float>(), fusedDa.Download<float>(), fusedDb.Download<float>()),
                (composedY.Download<float>(), composedDa.Download<float>(), composedDb.Download<float>()));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void DropoutIsDropoutKernelsMaskBothWays(int n)
    {
        var a = Check.Random(n, 9, Scale);
        var b = Check.Random(n, 10);
        var dy = Check.Random(n, 11);
        var (fused, composed) = FusedAndComposed(a, b, dy, Rate);
        // The same mask, activation and products, each rounded on its own.
        Check.BitIdentical(composed.Y, fused.Y, "gated gelu y with dropout");
        Check.BitIdentical(composed.Da, fused.Da, "gated gelu da with dropout");
        Check.BitIdentical(composed.Db, fused.Db, "gated gelu db with dropout");

        // The CPU reference path (CpuBackend): the reference activation and DropoutReference in
        // turn. A mask off by one element would miss by the element's whole value.
        var y = new float[n];
        GatedGeluReference.Forward<float>(a, b, y, n);
        DropoutReference.Forward<float>(y, n, Rate, Seed, Stream);
        var droppedDy = (float[])dy.Clone();
        DropoutReference.Backward<float>(droppedDy, n, Rate, Seed, Stream);
        var da = new float[n];
        var db = new float[n];
        GatedGeluReference.Backward<float>(a, b, droppedDy, da, db, n);
        Check.Close(y, fused.Y, Tolerance, "gated gelu y with dropout vs reference");
        Check.Close(da, fused.Da, Tolerance, "gated gelu da with dropout vs reference");
        Check.Close(db, fused.Db, Tolerance, "gated gelu db with dropout vs reference");
    }

    [Fact]
    public void RateZeroIsThePlainActivation()
    {
        const int n = 300;
        var (fused, composed) = FusedAndComposed(Check.Random(n, 12, Scale), Check.Random(n, 13), Check.Random(n, 14), rate: 0f);
        Check.BitIdentical(composed.Y, fused.Y, "gated gelu y at rate 0");
        Check.BitIdentical(composed.Da, fused.Da, "gated gelu da at rate 0");
        Check.BitIdentical(composed.Db, fused.Db, "gated gelu db at rate 0");
    }

    (float[] Da, float[] Db) RunBackward(float[] a, float[] b, float[] dy)
    {
        int n = a.Length;
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var gda = new GpuBuffer(Ctx, n * 4L, "da");
        using var gdb = new GpuBuffer(Ctx, n * 4L, "db");
        using (var g = new CommandGraph(Ctx))
        {
            GatedGeluKernel.Backward(g, ga, gb, gdy, gda, gdb, n);
            g.Run();
        }
        return (gda.Download<float>(), gdb.Download<float>());
    }
}
