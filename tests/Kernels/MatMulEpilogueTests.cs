using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>The residual epilogue of the products (<see cref="MatMulEpilogue.Residual"/>,
/// shaders/include/matmul_epilogue.glsl): C = D + dropout(alpha·A·B) in the product's store.
/// <para>Each case runs, on the same kernel and tiling, the epilogue and what it replaces (the
/// product into a branch of its own, then add.comp's dropping add of D and the branch): where the
/// sums are the same, which is everywhere on the portable kernel and on the matrix units' staged
/// store, the two must agree bit for bit. Against the existing references composed
/// (MatMulReference, DropoutReference, AddReference) only the order of the sums differs:
/// MatMulTests' 1e-5 of the largest output on the portable kernel, MatMulTests' 1e-3 on the
/// matrix units, which round A and B to fp16. Elements of C's buffer outside its range come
/// back untouched, and with dropout some elements are D exactly (their branch dropped), without
/// none are.</para></summary>
[Collection(GpuCollections.Kernels)]
public sealed class MatMulEpilogueTests(GpuFixture f) : GpuTest(f)
{
    const uint Seed = 0x5eed1234, Stream = 77;

    // (M, N, K, C's offset, C's row length): odd sizes store one element at a time through edge
    // tiles; 4-aligned rows store four at a time in the staged tilings; past a 128x128 block
    // meets interior tiles and edges in one product.
    static readonly (int M, int N, int K, int COffset, int CStrideM)[] Shapes = [(37, 29, 13, 5, 29), (36, 20, 33, 8, 24), (140, 132, 20, 12, 136)];

    public static TheoryData<MatMulVariant, int, float, float> PortableCases()
    {
        var data = new TheoryData<MatMulVariant, int, float, float>();
        foreach (var v in Enum.GetValues<MatMulVariant>())
            for (int shape = 0; shape < Shapes.Length; shape++)
            {
                data.Add(v, shape, 0f, 1f);
                data.Add(v, shape, 0.25f, shape == 1 ? -0.75f : 1f);
            }
        return data;
    }


    static MatMulSpec SpecOf(int shape, float alpha)
    {
        var (m, n, k, cOffset, cStride) = Shapes[shape];
        return MatMulSpec.Rows(m, n, k, transposeB: true) with { COffset = cOffset, CStrideM = cStride, Alpha = alpha };
    }

    /// <summary>Which elements of a buffer of <paramref name="length"/> C's range covers.</summary>
    static bool[] InC(in MatMulSpec s, int length)
    {
        var inside = new bool[length];
        for (int m = 0; m < s.M; m++)
            for (int n = 0; n < s.N; n++) inside[s.COffset + m * s.CStrideM + n] = true;
        return inside;
    }

    static int LengthOf(in MatMulSpec s) => (int)s.Extents().C + 7;

    /// <summary>D + dropout(alpha·A·B) by the references composed, over the whole buffer.</summary>
    static float[] Composed(float[] a, float[] b, float[] d, in MatMulSpec s, float rate)
    {
        var branch = new float[d.Length];
        MatMulReference.Run(a, b, branch, s);
        DropoutReference.Forward<float>(branch, branch.Length, rate, Seed, Stream);
        var sum = (float[])d.Clone();
        AddReference.Forward(sum, branch);
        return sum;
    }

    /// <summary>Runs the epilogue into a C holding <paramref name="c0"/> and the product-then-add it
    /// replaces, on the kernel <paramref name="run"/> appends; returns both over C's buffer.</summary>
    (float[] Epilogue, float[] ProductThenAdd) Run(float[] a, GpuBuffer gb, float[] d, float[] c0, MatMulSpec spec, float rate,
                                                   Action<CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, MatMulSpec, MatMulEpilogueOperands<GpuBuffer>?> run, GpuContext ctx)
    {
        using var ga = GpuBuffer.From<float>(ctx, a, "a");
        using var gd = GpuBuffer.From<float>(ctx, d, "d");
        using var gc = GpuBuffer.From<float>(ctx, c0, "c");
        using var branch = GpuBuffer.From<float>(ctx, new float[c0.Length], "branch");
        using var sum = GpuBuffer.From<float>(ctx, new float[c0.Length], "sum");
        using var seed = GpuBuffer.From<uint>(ctx, [Seed], "seed");
        DropoutMask<GpuBuffer>? mask = rate > 0 ? new(rate, seed, Stream) : null;
        using (var g = new CommandGraph(ctx))
        {
            run(g, ga, gb, gc, spec with { Epilogue = MatMulEpilogue.Residual }, MatMulEpilogueOperands<GpuBuffer>.Residual(gd, mask));
            run(g, ga, gb, branch, spec, null);
            AddKernel.Forward(g, gd, branch, c0.Length, 1f, mask, sum);
            g.Run();
        }
        return (gc.Download<float>(), sum.Download<float>());
    }

    static void CheckResults(float[] got, float[] productThenAdd, float[] expected, float[] d, float[] c0, in MatMulSpec s, float rate, bool bitIdentical, double tolerance, string what)
    {
        var inside = InC(s, c0.Length);
        float[] In(float[] x) => x.Where((_, i) => inside[i]).ToArray();
        if (bitIdentical) Check.BitIdentical(In(productThenAdd), In(got), what + " against product then add");
        Check.Close(In(expected), In(got), tolerance, what + " against the references composed");
        for (int i = 0; i < c0.Length; i++)
            if (!inside[i]) Assert.True(BitConverter.SingleToInt32Bits(c0[i]) == BitConverter.SingleToInt32Bits(got[i]), $"{what}: element {i} outside C was written");
        int asD = In(got).Zip(In(d)).Count(p => p.First == p.Second);
        if (rate > 0) Assert.True(asD > 0, $"{what}: no element dropped");
        else Assert.Equal(0, asD);
    }

    [Theory, MemberData(nameof(PortableCases))]
    public void PortableEpilogueIsProductThenAdd(MatMulVariant variant, int shape, float rate, float alpha)
    {
        var spec = SpecOf(shape, alpha);
        int length = LengthOf(spec);
        var a = Check.Random(spec.M * spec.K, 1);
        var b = Check.Random(spec.N * spec.K, 2);
        var d = Check.Random(length, 3);
        var c0 = Check.Random(length, 4);
        using var gb = GpuBuffer.From<float>(Ctx, b, "b");
        var t = variant.Tiling();
        var (got, productThenAdd) = Run(a, gb, d, c0, spec, rate, (g, ga, gbb, gc, s, e) => MatMulKernel.Run(g, ga, gbb, gc, s, t, epilogue: e), Ctx);
        CheckResults(got, productThenAdd, Composed(a, b, d, spec, rate), d, c0, spec, rate, bitIdentical: true, 1e-5, $"{variant} {Shapes[shape]} rate {rate} alpha {alpha}");
    }

    /// <summary>The matrix units (or their emulation) with a bf16 weight: interior tiles of
    /// 4-aligned rows without dropout and alpha 1 start their accumulators from D (the direct
    /// store), whose sums then differ from the product's, within the units' bound; with dropout or
    /// another alpha every tile goes through the staged store, bit for bit the product then add.</summary>
    [SkippableTheory]
    [InlineData(256, 128, 96, 0f, 1f), InlineData(256, 128, 96, 0.25f, 1f), InlineData(256, 128, 96, 0f, 0.5f)]
    [InlineData(200, 136, 100, 0f, 1f), InlineData(200, 136, 100, 0.25f, -0.75f)]
    public void MatrixUnitsEpilogueIsProductThenAdd(int m, int n, int k, float rate, float alpha)
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(m, n, k, transposeB: true) with { Alpha = alpha };
        int length = LengthOf(spec);
        var a = Check.Random(m * k, 1);
        var b = Check.Random(n * k, 2);
        HalfFloat.Round(b, WeightPrecision.Bf16);
        var bits = new ushort[b.Length];
        HalfFloat.Encode(b, bits, WeightPrecision.Bf16);
        var d = Check.Random(length, 3);
        var c0 = Check.Random(length, 4);
        using var gb = GpuBuffer.From<ushort>(ctx, bits, "b");
        var roundedA = (float[])a.Clone();
        HalfFloat.Round(roundedA, WeightPrecision.Fp16);
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
        {
            var t = tiling.Fits(ctx) ? tiling : tiling with { SharedK = 16 };
            var (got, productThenAdd) = Run(a, gb, d, c0, spec, rate,
                                            (g, ga, gbb, gc, s, e) => MatMulKernel.RunOnMatrixUnits(g, ga, gbb, gc, s, t, WeightPrecision.Bf16, epilogue: e), ctx);
            bool direct = rate == 0 && alpha == 1f;
            CheckResults(got, productThenAdd, Composed(roundedA, b, d, spec, rate), d, c0, spec, rate, bitIdentical: !direct, 1e-3,
                         $"coopmat {t} {m}x{n}x{k} rate {rate} alpha {alpha}");
        }
    }

    /// <summary>A 16-bit C with its D stored alike (matmul_half, and the matrix units' staged
    /// store, which every 16-bit C takes): D widened, the dropped branch added in fp32 and the
    /// total narrowed once, bit for bit the fp32 epilogue's sum rounded (the same kernel and tiling
    /// sum alike whatever C's storage), which differs from the unrounded sum somewhere.</summary>
    [SkippableTheory]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.Streamed, 0.25f, false), InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0.25f, false)]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.StagedSmall, 0f, false)]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.Staged, 0.25f, true), InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0f, true)]
    public void SixteenBitCIsTheFp32EpilogueRounded(ActivationPrecision storage, MatMulVariant variant, float rate, bool matrixUnits)
    {
        var ctx = matrixUnits ? MatrixUnitsCtx : Ctx;
        var spec = SpecOf(1, -0.75f) with { Epilogue = MatMulEpilogue.Residual };
        int length = LengthOf(spec);
        var a = Check.Random(spec.M * spec.K, 1);
        var d = StoredActivations.Rounded(Check.Random(length, 3), storage);
        using var ga = GpuBuffer.From<float>(ctx, a, "a");
        using var gb = GpuBuffer.From<float>(ctx, Check.Random(spec.N * spec.K, 2), "b");
        using var d32 = GpuBuffer.From<float>(ctx, d, "d32");
        using var c32 = GpuBuffer.From<float>(ctx, new float[length], "c32");
        using var d16 = StoredActivations.Upload(ctx, d, storage, "d16");
        using var c16 = StoredActivations.Output(ctx, length, storage, "c16");
        using var seed = GpuBuffer.From<uint>(ctx, [Seed], "seed");
        DropoutMask<GpuBuffer>? mask = rate > 0 ? new(rate, seed, Stream) : null;
        var run = MatMulVariants.Runner(ctx, variant, matrixUnits);
        void Product(CommandGraph g, GpuBuffer c, GpuBuffer dd, MatMulSpec s) => run(g, ga, gb, c, s, MatMulEpilogueOperands<GpuBuffer>.Residual(dd, mask));
        using (var g = new CommandGraph(ctx))
        {
            Product(g, c32, d32, spec);
            Product(g, c16, d16, spec with { CStorage = storage });
            g.Run();
        }
        var inside = InC(spec, length);
        var fp32 = c32.Download<float>().Where((_, i) => inside[i]).ToArray();
        var rounded = StoredActivations.Rounded(fp32, storage);
        // The buffer's padding past its elements, if any, comes back as Output left it too.
        var bits = c16.Download<ushort>();
        var got = bits[..length].Select((h, i) => (h, i)).Where(p => inside[p.i])
            .Select(p => storage == ActivationPrecision.Bf16 ? HalfFloat.FromBf16(p.h) : HalfFloat.FromFp16(p.h)).ToArray();
        string what = $"{storage.Name()} C {(matrixUnits ? "matrix units" : variant.ToString())} rate {rate}";
        Check.BitIdentical(rounded, got, what);
        Assert.NotEqual(fp32, got);
        Assert.All(bits.Where((_, i) => i >= length || !inside[i]), h => Assert.Equal(StoredActivations.Unwritten, h));
    }

    /// <summary>The reference's epilogue is the references composed, bit for bit, and so is the
    /// CPU backend's (the golden and dropout tests compare it with the device's).</summary>
    [Theory, InlineData(0, 0f, 1f), InlineData(1, 0.1f, -0.75f), InlineData(2, 0.25f, 1f)]
    public void ReferenceEpilogueIsTheReferencesComposed(int shape, float rate, float alpha)
    {
        var spec = SpecOf(shape, alpha);
        int length = LengthOf(spec);
        var a = Check.Random(spec.M * spec.K, 1);
        var b = Check.Random(spec.N * spec.K, 2);
        var d = Check.Random(length, 3);
        var c = Check.Random(length, 4);
        var c0 = (float[])c.Clone();
        MatMulReference.Run(a, b, c, spec with { Epilogue = MatMulEpilogue.Residual }, d, rate, Seed, Stream);
        var expected = Composed(a, b, d, spec, rate);
        var inside = InC(spec, length);
        Check.BitIdentical(expected.Where((_, i) => inside[i]).ToArray(), c.Where((_, i) => inside[i]).ToArray(), $"reference {Shapes[shape]} rate {rate}");
        Assert.Equal(c0.Where((_, i) => !inside[i]), c.Where((_, i) => !inside[i]));
    }

    /// <summary>An epilogue excludes accumulating; its operands go with the epilogue in the spec
    /// and none without; D is stored as C is and spans C's range; its seed is a plain buffer.
    /// Each refused before anything is recorded.</summary>
    [Fact]
    public void MisfitEpiloguesAreRefused()
    {
        var spec = MatMulSpec.Rows(8, 8, 8, transposeB: true);
        var residual = spec with { Epilogue = MatMulEpilogue.Residual };
        using var f32 = new GpuBuffer(Ctx, 4 * 64, "f32");
        using var small = new GpuBuffer(Ctx, 4 * 63, "small");
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed], "seed");
        using var g = new CommandGraph(Ctx);
        var t = MatMulTiling.Streamed;
        void Throws(string expected, Action run) =>
            Assert.Contains(expected, Assert.Throws<ArgumentException>(run).Message, StringComparison.Ordinal);
        Throws("not both", () => MatMulKernel.Run(g, f32, f32, f32, residual with { Accumulate = true }, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(f32)));
        Throws("needs its operands", () => MatMulKernel.Run(g, f32, f32, f32, residual, t));
        Throws("no epilogue", () => MatMulKernel.Run(g, f32, f32, f32, spec, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(f32)));
        Throws("spans 64", () => MatMulKernel.Run(g, f32, f32, f32, residual, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(small)));
        if (ActivationPrecision.Bf16.IsSupported(Ctx.Capabilities))
        {
            using var bf16 = GpuBuffer.Activations(Ctx, 64, ActivationPrecision.Bf16, "bf16");
            Throws("D is read as C is", () => MatMulKernel.Run(g, f32, f32, f32, residual, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(bf16)));
            Throws("seed", () => MatMulKernel.Run(g, f32, f32, f32, residual, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(f32, new DropoutMask<GpuBuffer>(0.1f, bf16, 0))));
        }
        Assert.Equal(0, g.DispatchCount);
        // D may be C's own buffer: C = C + dropout(A·B).
        using var c = new GpuBuffer(Ctx, 4 * 64, "c");
        MatMulKernel.Run(g, f32, f32, c, residual, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(c, new DropoutMask<GpuBuffer>(0.1f, seed, 0)));
        Assert.Equal(1, g.DispatchCount);
    }
}
