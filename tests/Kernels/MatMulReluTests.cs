using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using static VkPrompt.Tests.Kernels.MatMulGateTests;

namespace VkPrompt.Tests.Kernels;

/// <summary>The relu epilogue of the products (<see cref="MatMulEpilogue.Relu"/>,
/// shaders/include/matmul_epilogue.glsl): C = dropout(relu(alpha·A·B)) in the product's store.
/// <para>Each case runs, on the same kernel and tiling, the epilogue and what it replaces (the
/// product into a buffer stored as C, then <see cref="ReluKernel.Forward"/> over it with the same
/// mask): the sums are the same, so C must agree bit for bit, in every storage (the sum rounded
/// as C stores it before the relu). Against the references composed (MatMulReference rounded to
/// the storage, ReluReference, DropoutReference) only the sums' order differs: within 1e-5 of the
/// largest output in fp32, four units of the storage's last place in 16 bits. Elements of C's
/// buffer outside its range come back untouched; with dropout, some element whose product is
/// positive is 0.</para></summary>
[Collection(GpuCollections.Kernels)]
public sealed class MatMulReluTests(GpuFixture f) : GpuTest(f)
{
    const uint Seed = 0x5eed4321, Stream = 31;

    // (M, N, K, C's offset, C's row length), as MatMulGateTests': edge tiles and one element at a
    // time, 4-aligned rows four at a time, interior tiles beside edges.
    static readonly (int M, int N, int K, int COffset, int CStrideM)[] Shapes = [(37, 29, 13, 5, 29), (36, 20, 33, 8, 24), (140, 132, 20, 12, 136)];

    static MatMulSpec SpecOf(int shape)
    {
        var (m, n, k, cOffset, cStride) = Shapes[shape];
        // Shape 1 with a negative alpha: the relu must see the scaled sum, not the sum.
        return MatMulSpec.Rows(m, n, k, transposeB: true) with { COffset = cOffset, CStrideM = cStride, Alpha = shape == 1 ? -0.75f : 1f };
    }


    /// <summary>The relu epilogue on the kernel <paramref name="run"/> appends, and the product
    /// then the relu it replaces, C stored as <paramref name="storage"/>; checks them against each
    /// other and returns the epilogue's C (widened, over the buffer).</summary>
    static float[] ReluAgainstProductThenRelu(GpuContext ctx, float[] a, GpuBuffer gb, MatMulSpec spec, ActivationPrecision storage, float rate,
                                              Action<CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, MatMulSpec, MatMulEpilogueOperands<GpuBuffer>?> run, string what)
    {
        int length = (int)spec.Extents().C + 7;
        spec = spec with { CStorage = storage };
        var fill = Check.Random(length, 4);
        using var ga = GpuBuffer.From<float>(ctx, a, "a");
        using var c = Fresh(ctx, length, storage, fill, "c");
        using var product = Fresh(ctx, length, storage, fill, "product");
        using var hidden = Fresh(ctx, length, storage, fill, "hidden");
        using var seed = GpuBuffer.From<uint>(ctx, [Seed], "seed");
        DropoutMask<GpuBuffer>? mask = rate > 0 ? new(rate, seed, Stream) : null;
        using (var g = new CommandGraph(ctx))
        {
            run(g, ga, gb, c, spec with { Epilogue = MatMulEpilogue.Relu }, MatMulEpilogueOperands<GpuBuffer>.Relu(mask));
            run(g, ga, gb, product, spec, null);
            ReluKernel.Forward(g, product, hidden, length, mask);
            g.Run();
        }
        var inside = InC(spec, length);
        int[] Outside(int[] x) => x.Where((_, i) => !inside[i]).ToArray();
        float[] In(float[] x) => x.Where((_, i) => inside[i]).ToArray();
        var before = storage == ActivationPrecision.Fp32 ? fill.Select(BitConverter.SingleToInt32Bits).ToArray() : Enumerable.Repeat((int)StoredActivations.Unwritten, length).ToArray();
        Assert.True(Outside(before).SequenceEqual(Outside(Bits(c, length))), $"{what}: C written outside its range");
        var got = Widened(c, length);
        Check.BitIdentical(In(Widened(hidden, length)), In(got), what + ": C against the product then the relu");
        var sums = In(Widened(product, length));
        var outputs = In(got);
        Assert.Contains(sums, v => v < 0);
        Assert.All(outputs, v => Assert.True(v >= 0, $"{what}: a negative output {v}"));
        bool dropped = sums.Zip(outputs).Any(p => p.First > 0 && p.Second == 0);
        Assert.True(dropped == rate > 0, $"{what}: {(rate > 0 ? "no positive element dropped" : "a positive element zeroed without dropout")}");
        return got;
    }

    /// <summary>The references composed over the buffer: the product rounded to the storage, the
    /// relu of it, dropped, rounded.</summary>
    static float[] Composed(float[] a, float[] b, in MatMulSpec s, ActivationPrecision storage, float rate)
    {
        int length = (int)s.Extents().C + 7;
        var product = new float[length];
        MatMulReference.Run(a, b, product, s);
        var y = new float[length];
        ReluReference.Forward<float>(StoredActivations.Rounded(product, storage), y, length);
        DropoutReference.Forward<float>(y, length, rate, Seed, Stream);
        return StoredActivations.Rounded(y, storage);
    }

    public static TheoryData<MatMulVariant, int, float> PortableCases()
    {
        var data = new TheoryData<MatMulVariant, int, float>();
        foreach (var v in Enum.GetValues<MatMulVariant>())
            for (int shape = 0; shape < Shapes.Length; shape++) data.Add(v, shape, (shape + (int)v) % 2 == 0 ? 0.25f : 0f);
        return data;
    }

    [Theory, MemberData(nameof(PortableCases))]
    public void PortableReluIsProductThenRelu(MatMulVariant variant, int shape, float rate)
    {
        var spec = SpecOf(shape);
        var a = Check.Random(spec.M * spec.K, 1);
        var b = Check.Random(spec.N * spec.K, 2);
        using var gb = GpuBuffer.From<float>(Ctx, b, "b");
        var t = variant.Tiling();
        string what = $"{variant} {Shapes[shape]} rate {rate}";
        var got = ReluAgainstProductThenRelu(Ctx, a, gb, spec, ActivationPrecision.Fp32, rate,
                                             (g, ga, gbb, gc, s, e) => MatMulKernel.Run(g, ga, gbb, gc, s, t, epilogue: e), what);
        var inside = InC(spec, got.Length);
        var expected = Composed(a, b, spec, ActivationPrecision.Fp32, rate).Where((_, i) => inside[i]).ToArray();
        Check.Close(expected, got.Where((_, i) => inside[i]).ToArray(), 1e-5, what + " against the references composed");
    }

    /// <summary>16-bit C (matmul_half, and the matrix units' staged store, which the relu always
    /// takes): the sum narrowed as stored before the relu, bit for bit the product then the relu
    /// of the same storage.</summary>
    [SkippableTheory]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.Streamed, 0.25f, false), InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0f, false)]
    // The staged variant's four-wide store (shape 2's 4-aligned rows) with dropout, where rounding
    // the sum before the relu shows: narrow(relu(v)·scale) is not narrow(relu(narrow(v))·scale).
    [InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0.25f, false)]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.Staged, 0f, true), InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0.25f, true)]
    public void SixteenBitReluIsProductThenRelu(ActivationPrecision storage, MatMulVariant variant, float rate, bool matrixUnits)
    {
        var ctx = matrixUnits ? MatrixUnitsCtx : Ctx;
        foreach (int shape in new[] { 0, 2 })
        {
            var spec = SpecOf(shape);
            var a = Check.Random(spec.M * spec.K, 1);
            var b = Check.Random(spec.N * spec.K, 2);
            using var gb = GpuBuffer.From<float>(ctx, b, "b");
            string what = $"{storage.Name()} {(matrixUnits ? "matrix units" : variant.ToString())} {Shapes[shape]} rate {rate}";
            var got = ReluAgainstProductThenRelu(ctx, a, gb, spec, storage, rate, MatMulVariants.Runner(ctx, variant, matrixUnits), what);
            if (matrixUnits) continue;
            var inside = InC(spec, got.Length);
            Check.Close(Composed(a, b, spec, storage, rate).Where((_, i) => inside[i]).ToArray(), got.Where((_, i) => inside[i]).ToArray(),
                        4 * StoredActivations.Ulp(storage), what + " against the references composed");
        }
    }

    /// <summary>The matrix units (or their emulation) with a bf16 weight: interior tiles of
    /// 4-aligned rows with alpha 1 and no dropout, which an epilogue-free product stores directly,
    /// take the staged store with the relu too.</summary>
    [SkippableFact]
    public void MatrixUnitsReluIsProductThenRelu()
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(256, 128, 96, transposeB: true);
        var a = Check.Random(spec.M * spec.K, 1);
        using var gb = Bf16Weight(ctx, Check.Random(spec.N * spec.K, 2));
        var t = MatrixUnitsTiling.Default.Fits(ctx) ? MatrixUnitsTiling.Default : MatrixUnitsTiling.Default with { SharedK = 16 };
        ReluAgainstProductThenRelu(ctx, a, gb, spec, ActivationPrecision.Fp32, 0f,
                                   (g, ga, gbb, gc, s, e) => MatMulKernel.RunOnMatrixUnits(g, ga, gbb, gc, s, t, WeightPrecision.Bf16, epilogue: e),
                                   $"coopmat {t}");
    }

}
