using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>The gated feed-forward op, with each <see cref="GateActivation"/>: T5 v1.1's gelu_tanh
/// and UL2's silu share one shader pair and one reference.</summary>
[Collection(GpuCollections.Kernels)]
public sealed class GatedActivationTests(GpuFixture f) : GpuTest(f)
{
    static readonly GateActivation[] Activations = [GateActivation.GeluTanh, GateActivation.Silu];

    // Theories take the activation's name: the enum is internal to the runtime.
    public static TheoryData<string, int> Sizes()
    {
        var data = new TheoryData<string, int>();
        foreach (var act in Activations)
            foreach (var n in Check.AwkwardSizes) data.Add(act.ToString(), n);
        return data;
    }

    public static TheoryData<string> Each() => new(Activations.Select(a => a.ToString()));

    // Pre-activations of a trained T5 FF layer mostly lie within a few units of 0; scale 6
    // covers both saturated tails of the gelu gate as well as its curved middle, and silu's
    // curved middle and the start of its tails.
    const float Scale = 6f;

    // The reference is evaluated in double, so this is the shader's own error: Vulkan lets
    // exp() be off by (3 + 2|x|) ulp, and a few float roundings follow. Lavapipe stays within
    // 3e-6 of the double result even element by element (in the far negative tail too), for
    // either activation.
    const double Tolerance = 1e-5;

    [Theory, MemberData(nameof(Sizes))]
    public void ForwardMatchesReference(string activation, int n)
    {
        var act = Enum.Parse<GateActivation>(activation);
        var a = Check.Random(n, 1, Scale);
        var b = Check.Random(n, 2);
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gy = new GpuBuffer(Ctx, n * 4L, "y");
        using (var g = new CommandGraph(Ctx))
        {
            GatedActivationKernel.Forward(g, ga, gb, gy, n, act);
            g.Run();
        }
        var y = new float[n];
        GatedActivationReference.Forward<float>(a, b, y, n, act);
        Check.Close(y, gy.Download<float>(), Tolerance, $"gated {act}");
    }

    [Theory, MemberData(nameof(Sizes))]
    public void BackwardMatchesReference(string activation, int n)
    {
        var act = Enum.Parse<GateActivation>(activation);
        var a = Check.Random(n, 3, Scale);
        var b = Check.Random(n, 4);
        var dy = Check.Random(n, 5);
        var (da, db) = RunBackward(a, b, dy, act);
        var rda = new float[n];
        var rdb = new float[n];
        GatedActivationReference.Backward<float>(a, b, dy, rda, rdb, n, act);
        Check.Close(rda, da, Tolerance, $"gated {act} da");
        Check.Close(rdb, db, Tolerance, $"gated {act} db");
    }

    [Theory, MemberData(nameof(Each))]
    public void HugeInputsStayFinite(string activation)
    {
        var act = Enum.Parse<GateActivation>(activation);
        // Past |x| ~ 10 a tanh built from exponentials gives inf/inf, and x^3 overflows float
        // past ~7e12; the exact values there are x (or 0) and a derivative of 1 (or 0). silu's
        // gate saturates more slowly (1 - sigmoid(x) ~ e^-x), below float's resolution from
        // |x| ~ 20, and exp(-x) overflows past 88.
        float[] a = act == GateActivation.Silu
            ? [25f, -25f, 50f, -50f, 89f, -89f, 1e4f, -1e4f, 1e20f, -1e20f, float.MaxValue, -float.MaxValue]
            : [10f, -10f, 11f, -11f, 50f, -50f, 1e4f, -1e4f, 1e13f, -1e13f, 1e20f, -1e20f, float.MaxValue, -float.MaxValue];
        var b = Enumerable.Repeat(1f, a.Length).ToArray();
        var dy = Enumerable.Repeat(1f, a.Length).ToArray();
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gy = new GpuBuffer(Ctx, a.Length * 4L, "y");
        using (var g = new CommandGraph(Ctx))
        {
            GatedActivationKernel.Forward(g, ga, gb, gy, a.Length, act);
            g.Run();
        }
        var (da, db) = RunBackward(a, b, dy, act);
        var y = gy.Download<float>();
        for (int i = 0; i < a.Length; i++)
        {
            float expectedY = a[i] > 0 ? a[i] : 0f;
            float expectedGrad = a[i] > 0 ? 1f : 0f;
            // At +-10 the gelu gate differs from a step by ~1e-38 relative to x, far below 1 ulp;
            // at +-25 silu's by ~1e-11.
            Assert.True(Math.Abs(y[i] - expectedY) <= 1e-6 * Math.Abs(a[i]), $"y({a[i]}) = {y[i]}");
            Assert.True(Math.Abs(db[i] - expectedY) <= 1e-6 * Math.Abs(a[i]), $"db({a[i]}) = {db[i]}");
            Assert.True(Math.Abs(da[i] - expectedGrad) <= 1e-6f, $"da({a[i]}) = {da[i]}");
            Assert.Equal(expectedY, GatedActivationReference.Activation(act, a[i]), 1e-6f * Math.Abs(a[i]));
            Assert.Equal(expectedGrad, GatedActivationReference.Derivative(act, a[i]), 1e-6f);
        }
    }

    [Theory, MemberData(nameof(Each))]
    public void BackwardReferenceMatchesFiniteDifferences(string activation)
    {
        var act = Enum.Parse<GateActivation>(activation);
        const int n = 129;
        var a = FiniteDifference.ToDouble(Check.Random(n, 6, Scale));
        var b = FiniteDifference.ToDouble(Check.Random(n, 7));
        var w = FiniteDifference.ToDouble(Check.Random(n, 8));
        double Loss(double[] pa, double[] pb)
        {
            var y = new double[n];
            GatedActivationReference.Forward<double>(pa, pb, y, n, act);
            return FiniteDifference.Dot(w, y);
        }
        var numericA = FiniteDifference.Gradient(a, p => Loss(p, b));
        var numericB = FiniteDifference.Gradient(b, p => Loss(a, p));
        var da = new double[n];
        var db = new double[n];
        GatedActivationReference.Backward<double>(a, b, w, da, db, n, act);
        // Central differences with h = 1e-6: truncation ~h^2 |f'''| plus rounding ~1e-16 / h.
        Assert.True(FiniteDifference.MaxRelativeError(numericA, da) < 1e-8, "da");
        Assert.True(FiniteDifference.MaxRelativeError(numericB, db) < 1e-8, "db");
    }

    [Fact]
    public void GeluReferenceMatchesTheTextbookFormula()
    {
        // The reference uses the logistic form; where 1 + tanh(u) does not cancel (x >= -3) the
        // textbook formula is accurate in double too, and the two must agree to rounding.
        const double c = 0.7978845608028654, k = 0.044715;
        for (double x = -3; x <= 12; x += 1.0 / 64)
        {
            double u = c * (x + k * x * x * x), t = Math.Tanh(u);
            double gelu = 0.5 * x * (1 + t);
            double grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x);
            Assert.Equal(gelu, GatedActivationReference.Activation(GateActivation.GeluTanh, x), 1e-14 * Math.Max(1, Math.Abs(x)));
            Assert.Equal(grad, GatedActivationReference.Derivative(GateActivation.GeluTanh, x), 1e-14);
        }
    }

    [Fact]
    public void SiluReferenceMatchesTheTextbookFormula()
    {
        // silu(x) = x / (1 + e^-x) and its derivative through tanh: sigmoid(x) = (1 + tanh(x/2)) / 2,
        // a form the reference does not use, so a wrong sign or factor there shows.
        for (double x = -12; x <= 12; x += 1.0 / 64)
        {
            double s = 0.5 * (1 + Math.Tanh(x / 2));
            Assert.Equal(x * s, GatedActivationReference.Activation(GateActivation.Silu, x), 1e-14 * Math.Max(1, Math.Abs(x)));
            Assert.Equal(s * (1 + x * (1 - s)), GatedActivationReference.Derivative(GateActivation.Silu, x), 1e-14);
        }
    }

    const float Rate = 0.1f;
    const uint Seed = 99, Stream = 3;

    /// <summary>Forward and backward on the GPU with the dropout fused, and as the plain kernels
    /// with DropoutKernel on y after the forward and on dy before the backward: y, da and db of
    /// each.</summary>
    ((float[] Y, float[] Da, float[] Db) Fused, (float[] Y, float[] Da, float[] Db) Composed) FusedAndComposed(
        float[] a, float[] b, float[] dy, float rate, GateActivation act)
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
            GatedActivationKernel.Forward(g, ga, gb, fusedY, n, act, mask);
            GatedActivationKernel.Backward(g, ga, gb, gdy, fusedDa, fusedDb, n, act, mask);
            GatedActivationKernel.Forward(g, ga, gb, composedY, n, act);
            DropoutKernel.Forward(g, composedY, n, rate, seed, Stream);
            DropoutKernel.Backward(g, composedDy, n, rate, seed, Stream);
            GatedActivationKernel.Backward(g, ga, gb, composedDy, composedDa, composedDb, n, act);
            g.Run();
        }
        return ((fusedY.Download<float>(), fusedDa.Download<float>(), fusedDb.Download<float>()),
                (composedY.Download<float>(), composedDa.Download<float>(), composedDb.Download<float>()));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void DropoutIsDropoutKernelsMaskBothWays(string activation, int n)
    {
        var act = Enum.Parse<GateActivation>(activation);
        var a = Check.Random(n, 9, Scale);
        var b = Check.Random(n, 10);
        var dy = Check.Random(n, 11);
        var (fused, composed) = FusedAndComposed(a, b, dy, Rate, act);
        // The same mask, activation and products, each rounded on its own.
        Check.BitIdentical(composed.Y, fused.Y, $"gated {act} y with dropout");
        Check.BitIdentical(composed.Da, fused.Da, $"gated {act} da with dropout");
        Check.BitIdentical(composed.Db, fused.Db, $"gated {act} db with dropout");

        // The CPU reference path (CpuBackend): the reference activation and DropoutReference in
        // turn. A mask off by one element would miss by the element's whole value.
        var y = new float[n];
        GatedActivationReference.Forward<float>(a, b, y, n, act);
        DropoutReference.Forward<float>(y, n, Rate, Seed, Stream);
        var droppedDy = (float[])dy.Clone();
        DropoutReference.Backward<float>(droppedDy, n, Rate, Seed, Stream);
        var da = new float[n];
        var db = new float[n];
        GatedActivationReference.Backward<float>(a, b, droppedDy, da, db, n, act);
        Check.Close(y, fused.Y, Tolerance, $"gated {act} y with dropout vs reference");
        Check.Close(da, fused.Da, Tolerance, $"gated {act} da with dropout vs reference");
        Check.Close(db, fused.Db, Tolerance, $"gated {act} db with dropout vs reference");
    }

    [Theory, MemberData(nameof(Each))]
    public void RateZeroIsThePlainActivation(string activation)
    {
        var act = Enum.Parse<GateActivation>(activation);
        const int n = 300;
        var (fused, composed) = FusedAndComposed(Check.Random(n, 12, Scale), Check.Random(n, 13), Check.Random(n, 14), rate: 0f, act);
        Check.BitIdentical(composed.Y, fused.Y, $"gated {act} y at rate 0");
        Check.BitIdentical(composed.Da, fused.Da, $"gated {act} da at rate 0");
        Check.BitIdentical(composed.Db, fused.Db, $"gated {act} db at rate 0");
    }

    const ActivationPrecision F32 = ActivationPrecision.Fp32, Bf16 = ActivationPrecision.Bf16, F16 = ActivationPrecision.Fp16;

    /// <summary>Storages of (a, b, y): each 16-bit format throughout, a 16-bit input into fp32,
    /// fp32 into a 16-bit output, and bf16 into fp16 (its range into the narrower one).</summary>
    static readonly (ActivationPrecision A, ActivationPrecision B, ActivationPrecision Y)[] ForwardStorages =
        [(Bf16, Bf16, Bf16), (F16, F16, F16), (Bf16, Bf16, F32), (F32, F32, Bf16), (Bf16, F32, F16)];

    /// <summary>Storages of (a, b) for the backward, whose dy, da and db are fp32.</summary>
    static readonly (ActivationPrecision A, ActivationPrecision B)[] BackwardStorages = [(Bf16, Bf16), (F16, F16), (Bf16, F32), (F32, F16)];

    static readonly int[] StoredSizes = [7, 300];

    public static TheoryData<string, ActivationPrecision, ActivationPrecision, ActivationPrecision, int> ForwardStoragesAndSizes()
    {
        var data = new TheoryData<string, ActivationPrecision, ActivationPrecision, ActivationPrecision, int>();
        foreach (var act in Activations)
            foreach (var (sa, sb, sy) in ForwardStorages)
                foreach (var n in StoredSizes) data.Add(act.ToString(), sa, sb, sy, n);
        return data;
    }

    public static TheoryData<string, ActivationPrecision, ActivationPrecision, int> BackwardStoragesAndSizes()
    {
        var data = new TheoryData<string, ActivationPrecision, ActivationPrecision, int>();
        foreach (var act in Activations)
            foreach (var (sa, sb) in BackwardStorages)
                foreach (var n in StoredSizes) data.Add(act.ToString(), sa, sb, n);
        return data;
    }

    public static TheoryData<string, ActivationPrecision> EachWithHalfStorages()
    {
        var data = new TheoryData<string, ActivationPrecision>();
        foreach (var act in Activations)
            foreach (var p in new[] { Bf16, F16 }) data.Add(act.ToString(), p);
        return data;
    }

    /// <summary>The forward and backward with a and b stored as <paramref name="sa"/> and
    /// <paramref name="sb"/> and y as <paramref name="sy"/>, beside the fp32 kernels on the same
    /// (rounded) a and b, with the same dropout mask if any: y (widened), da, db of each.</summary>
    ((float[] Y, float[] Da, float[] Db) Stored, (float[] Y, float[] Da, float[] Db) Fp32) RunStored(
        float[] a, float[] b, float[] dy, ActivationPrecision sa, ActivationPrecision sb, ActivationPrecision sy, GateActivation act, float rate = 0)
    {
        int n = a.Length;
        using var ga = StoredActivations.Upload(Ctx, a, sa, "a");
        using var gb = StoredActivations.Upload(Ctx, b, sb, "b");
        using var gy = StoredActivations.Output(Ctx, n, sy, "y");
        using var ga32 = GpuBuffer.From<float>(Ctx, StoredActivations.Rounded(a, sa), "fp32 a");
        using var gb32 = GpuBuffer.From<float>(Ctx, StoredActivations.Rounded(b, sb), "fp32 b");
        using var gy32 = new GpuBuffer(Ctx, n * 4L, "fp32 y");
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using var gda = new GpuBuffer(Ctx, n * 4L, "da");
        using var gdb = new GpuBuffer(Ctx, n * 4L, "db");
        using var gda32 = new GpuBuffer(Ctx, n * 4L, "fp32 da");
        using var gdb32 = new GpuBuffer(Ctx, n * 4L, "fp32 db");
        using (var g = new CommandGraph(Ctx))
        {
            var mask = new DropoutMask<GpuBuffer>(rate, seed, Stream);
            GatedActivationKernel.Forward(g, ga, gb, gy, n, act, mask);
            GatedActivationKernel.Backward(g, ga, gb, gdy, gda, gdb, n, act, mask);
            GatedActivationKernel.Forward(g, ga32, gb32, gy32, n, act, mask);
            GatedActivationKernel.Backward(g, ga32, gb32, gdy, gda32, gdb32, n, act, mask);
            g.Run();
        }
        return ((StoredActivations.Download(gy, n), gda.Download<float>(), gdb.Download<float>()),
                (gy32.Download<float>(), gda32.Download<float>(), gdb32.Download<float>()));
    }

    [SkippableTheory, MemberData(nameof(ForwardStoragesAndSizes))]
    public void ForwardReadsAndStoresItsStorages(string activation, ActivationPrecision sa, ActivationPrecision sb, ActivationPrecision sy, int n)
    {
        var act = Enum.Parse<GateActivation>(activation);
        var a = Check.Random(n, 15, Scale);
        var b = Check.Random(n, 16);
        var (stored, fp32) = RunStored(a, b, Check.Random(n, 17), sa, sb, sy, act);
        string what = $"gated {act} y, a {sa}, b {sb}, y {sy}";
        // Widening is exact and the arithmetic fp32 in both builds: the fp32 kernel's y on the
        // rounded inputs, rounded once as it is stored, to the bit.
        Check.BitIdentical(StoredActivations.Rounded(fp32.Y, sy), stored.Y, what);
        // The reference on the rounded inputs, its y rounded too: the shader's own error, and one
        // ulp of y's storage where that error moves a value across a rounding boundary.
        var y = new float[n];
        GatedActivationReference.Forward<float>(StoredActivations.Rounded(a, sa), StoredActivations.Rounded(b, sb), y, n, act);
        Check.Close(StoredActivations.Rounded(y, sy), stored.Y, StoredActivations.Ulp(sy) + Tolerance, what + " vs reference");
        // The inputs' rounding shows in y (against the kernel on unrounded inputs, which
        // ForwardMatchesReference checks), so a kernel ignoring a storage would not pass.
        var unrounded = new float[n];
        GatedActivationReference.Forward<float>(a, b, unrounded, n, act);
        if (sa != F32 || sb != F32)
            Assert.True(Check.MaxRelativeError(unrounded, stored.Y) > Tolerance, $"{what}: no sign of the inputs' rounding");
    }

    [SkippableTheory, MemberData(nameof(BackwardStoragesAndSizes))]
    public void BackwardReadsItsStorages(string activation, ActivationPrecision sa, ActivationPrecision sb, int n)
    {
        var act = Enum.Parse<GateActivation>(activation);
        var a = Check.Random(n, 18, Scale);
        var b = Check.Random(n, 19);
        var dy = Check.Random(n, 20);
        var (stored, fp32) = RunStored(a, b, dy, sa, sb, F32, act);
        string what = $"gated {act} backward, a {sa}, b {sb}";
        // fp32 gradients from exactly widened a and b: the fp32 kernel's, to the bit.
        Check.BitIdentical(fp32.Da, stored.Da, what + " da");
        Check.BitIdentical(fp32.Db, stored.Db, what + " db");
        var da = new float[n];
        var db = new float[n];
        GatedActivationReference.Backward<float>(StoredActivations.Rounded(a, sa), StoredActivations.Rounded(b, sb), dy, da, db, n, act);
        Check.Close(da, stored.Da, Tolerance, what + " da vs reference");
        Check.Close(db, stored.Db, Tolerance, what + " db vs reference");
    }

    [SkippableTheory, MemberData(nameof(EachWithHalfStorages))]
    public void DropoutWorksOnStoredActivations(string activation, ActivationPrecision p)
    {
        var act = Enum.Parse<GateActivation>(activation);
        const int n = 300;
        var a = Check.Random(n, 21, Scale);
        var b = Check.Random(n, 22);
        var dy = Check.Random(n, 23);
        var (stored, fp32) = RunStored(a, b, dy, p, p, p, act, Rate);
        // The same mask and arithmetic as the fp32 kernels with dropout (which
        // DropoutIsDropoutKernelsMaskBothWays ties to DropoutKernel and the reference), y rounded
        // once as it is stored.
        Check.BitIdentical(StoredActivations.Rounded(fp32.Y, p), stored.Y, $"gated {act} y as {p} with dropout");
        Check.BitIdentical(fp32.Da, stored.Da, $"gated {act} da from {p} with dropout");
        Check.BitIdentical(fp32.Db, stored.Db, $"gated {act} db from {p} with dropout");
        var y = new float[n];
        GatedActivationReference.Forward<float>(StoredActivations.Rounded(a, p), StoredActivations.Rounded(b, p), y, n, act);
        DropoutReference.Forward<float>(y, n, Rate, Seed, Stream);
        Check.Close(StoredActivations.Rounded(y, p), stored.Y, StoredActivations.Ulp(p) + Tolerance, $"gated {act} y as {p} with dropout vs reference");
        Assert.Contains(0f, stored.Y);
    }

    [SkippableTheory, MemberData(nameof(Each))]
    public void Bf16BeyondFp16RangeSaturatesAnFp16Y(string activation)
    {
        var act = Enum.Parse<GateActivation>(activation);
        // bf16 holds these; their products pass 65504 both ways, and fp16 keeps ±65504 for them.
        float[] a = [1e5f, 7e4f, 1e30f, 3e38f, -1e5f, 2f, 65504f];
        float[] b = [1f, -1f, -2f, 1f, 1f, 1e5f, 2f];
        var (stored, fp32) = RunStored(a, b, new float[a.Length], Bf16, Bf16, F16, act);
        Assert.Equal([65504f, -65504f, -65504f, 65504f, 0f, 65504f, 65504f], stored.Y.Select(v => v == 0 ? 0f : v).ToArray());
        Check.BitIdentical(StoredActivations.Rounded(fp32.Y, F16), stored.Y, $"gated {act} y as fp16 from bf16");
        Assert.All(fp32.Y.Where((_, i) => i != 4), v => Assert.True(Math.Abs(v) > 65520, $"{v} is not beyond fp16's range"));
    }

    (float[] Da, float[] Db) RunBackward(float[] a, float[] b, float[] dy, GateActivation act)
    {
        int n = a.Length;
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gdy = GpuBuffer.From<float>(Ctx, dy);
        using var gda = new GpuBuffer(Ctx, n * 4L, "da");
        using var gdb = new GpuBuffer(Ctx, n * 4L, "db");
        using (var g = new CommandGraph(Ctx))
        {
            GatedActivationKernel.Backward(g, ga, gb, gdy, gda, gdb, n, act);
            g.Run();
        }
        return (gda.Download<float>(), gdb.Download<float>());
    }
}
