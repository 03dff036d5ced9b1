using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>The gate epilogue of the products (<see cref="MatMulEpilogue.Gate"/>,
/// shaders/include/matmul_epilogue.glsl): H = dropout(act(a)·b), b = alpha·A·B, in the product's
/// store, b kept in C where asked.
/// <para>Each case runs, on the same kernel and tiling, the epilogue and what it replaces (the
/// product into C, then <see cref="GatedActivationKernel.Forward"/> over the gate and C): the sums
/// are the same (the gate always takes the staged store on the matrix units), so C and H must
/// agree bit for bit, in every storage (a, b and H 16-bit: b narrowed as stored and read back as
/// the gated activation read it). Against the references composed (MatMulReference, rounded to the
/// storage, GatedActivationReference, DropoutReference) the sums' order and the activation's
/// double arithmetic differ: within 1e-4 of the largest output in fp32 on the portable kernel.
/// Elements of C's and H's buffers outside C's range come back untouched, C everywhere where it
/// is not kept; with dropout some hidden elements are 0, without none are.</para></summary>
[Collection(GpuCollections.Kernels)]
public sealed class MatMulGateTests(GpuFixture f) : GpuTest(f)
{
    const uint Seed = 0x5eed1234, Stream = 77;

    // (M, N, K, C's offset, C's row length), as MatMulEpilogueTests': edge tiles and one element
    // at a time, 4-aligned rows four at a time, interior tiles beside edges.
    static readonly (int M, int N, int K, int COffset, int CStrideM)[] Shapes = [(37, 29, 13, 5, 29), (36, 20, 33, 8, 24), (140, 132, 20, 12, 136)];

    // The activation as GateActivation's value (the enum is internal, a theory's parameters public).
    public static TheoryData<MatMulVariant, int, float, float, int> PortableCases()
    {
        var data = new TheoryData<MatMulVariant, int, float, float, int>();
        foreach (var v in Enum.GetValues<MatMulVariant>())
            for (int shape = 0; shape < Shapes.Length; shape++)
            {
                data.Add(v, shape, 0f, 1f, (int)GateActivation.GeluTanh);
                data.Add(v, shape, 0.25f, shape == 1 ? -0.75f : 1f, (int)(shape == 2 ? GateActivation.Silu : GateActivation.GeluTanh));
            }
        return data;
    }


    static MatMulSpec SpecOf(int shape, float alpha)
    {
        var (m, n, k, cOffset, cStride) = Shapes[shape];
        return MatMulSpec.Rows(m, n, k, transposeB: true) with { COffset = cOffset, CStrideM = cStride, Alpha = alpha };
    }

    internal static bool[] InC(in MatMulSpec s, int length)
    {
        var inside = new bool[length];
        for (int m = 0; m < s.M; m++)
            for (int n = 0; n < s.N; n++) inside[s.COffset + m * s.CStrideM + n] = true;
        return inside;
    }

    /// <summary>A buffer of <paramref name="length"/> elements of <paramref name="storage"/> holding
    /// a pattern no kernel writes (fp32: <paramref name="fill"/>; 16-bit: <see cref="StoredActivations.Unwritten"/>).</summary>
    internal static GpuBuffer Fresh(GpuContext ctx, int length, ActivationPrecision storage, float[] fill, string name) =>
        storage == ActivationPrecision.Fp32 ? GpuBuffer.From<float>(ctx, fill, name) : StoredActivations.Output(ctx, length, storage, name);

    /// <summary>A buffer's elements as raw bits, so that untouched elements compare exactly.</summary>
    internal static int[] Bits(GpuBuffer b, int length) => b.Storage == ActivationPrecision.Fp32
        ? b.Download<int>()[..length]
        : b.Download<ushort>()[..length].Select(h => (int)h).ToArray();

    internal static float[] Widened(GpuBuffer b, int length) => b.Storage switch
    {
        ActivationPrecision.Fp32 => b.Download<float>()[..length],
        ActivationPrecision.Bf16 => b.Download<ushort>()[..length].Select(HalfFloat.FromBf16).ToArray(),
        _ => b.Download<ushort>()[..length].Select(HalfFloat.FromFp16).ToArray(),
    };

    /// <summary>The gate epilogue on the kernel <paramref name="run"/> appends, and the product then
    /// the gated activation it replaces, a, C and H stored as <paramref name="storage"/>; checks
    /// them against each other and returns the epilogue's hidden (widened, over the buffer).</summary>
    float[] GateAgainstProductThenActivation(GpuContext ctx, float[] a, GpuBuffer gb, MatMulSpec spec, ActivationPrecision storage, float rate, GateActivation activation,
                                             bool keepsC, Action<CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, MatMulSpec, MatMulEpilogueOperands<GpuBuffer>?> run, string what)
    {
        int length = (int)spec.Extents().C + 7;
        spec = spec with { CStorage = storage };
        var fill = Check.Random(length, 4);
        using var ga = GpuBuffer.From<float>(ctx, a, "a");
        using var gate = StoredActivations.Upload(ctx, Check.Random(length, 3).Select(v => 4 * v).ToArray(), storage, "gate");
        using var c = Fresh(ctx, length, storage, fill, "c");
        using var h = Fresh(ctx, length, storage, fill, "h");
        using var product = Fresh(ctx, length, storage, fill, "product");
        using var hidden = Fresh(ctx, length, storage, fill, "hidden");
        using var seed = GpuBuffer.From<uint>(ctx, [Seed], "seed");
        DropoutMask<GpuBuffer>? mask = rate > 0 ? new(rate, seed, Stream) : null;
        using (var g = new CommandGraph(ctx))
        {
            run(g, ga, gb, c, spec with { Epilogue = MatMulEpilogue.Gate }, MatMulEpilogueOperands<GpuBuffer>.Gated(gate, new MatMulGate<GpuBuffer>(h, activation, keepsC), mask));
            run(g, ga, gb, product, spec, null);
            GatedActivationKernel.Forward(g, gate, product, hidden, length, activation, mask);
            g.Run();
        }
        var inside = InC(spec, length);
        int[] Outside(int[] x) => x.Where((_, i) => !inside[i]).ToArray();
        float[] In(float[] x) => x.Where((_, i) => inside[i]).ToArray();
        var cBits = Bits(c, length);
        var hBits = Bits(h, length);
        var before = storage == ActivationPrecision.Fp32 ? fill.Select(BitConverter.SingleToInt32Bits).ToArray() : Enumerable.Repeat((int)StoredActivations.Unwritten, length).ToArray();
        if (keepsC) Check.BitIdentical(In(Widened(product, length)), In(Widened(c, length)), what + ": C against the product");
        else Assert.True(before.SequenceEqual(cBits), $"{what}: C written though not kept");
        Check.BitIdentical(In(Widened(hidden, length)), In(Widened(h, length)), what + ": H against the product then the gated activation");
        Assert.True(Outside(before).SequenceEqual(Outside(cBits)), $"{what}: C written outside its range");
        Assert.True(Outside(before).SequenceEqual(Outside(hBits)), $"{what}: H written outside C's range");
        var got = Widened(h, length);
        int zeros = In(got).Count(v => v == 0);
        if (rate > 0) Assert.True(zeros > 0, $"{what}: no element dropped");
        else Assert.Equal(0, zeros);
        return got;
    }

    /// <summary>The references composed over the buffer: the product rounded to the storage, the
    /// gated activation of the gate and it, dropped, rounded.</summary>
    static float[] Composed(float[] a, float[] b, in MatMulSpec s, ActivationPrecision storage, float rate, GateActivation activation)
    {
        int length = (int)s.Extents().C + 7;
        var product = new float[length];
        MatMulReference.Run(a, b, product, s);
        var gate = StoredActivations.Rounded(Check.Random(length, 3).Select(v => 4 * v).ToArray(), storage);
        var y = new float[length];
        GatedActivationReference.Forward<float>(gate, StoredActivations.Rounded(product, storage), y, length, activation);
        DropoutReference.Forward<float>(y, length, rate, Seed, Stream);
        return StoredActivations.Rounded(y, storage);
    }

    [Theory, MemberData(nameof(PortableCases))]
    public void PortableGateIsProductThenGatedActivation(MatMulVariant variant, int shape, float rate, float alpha, int activationValue)
    {
        var activation = (GateActivation)activationValue;
        var spec = SpecOf(shape, alpha);
        var a = Check.Random(spec.M * spec.K, 1);
        var b = Check.Random(spec.N * spec.K, 2);
        using var gb = GpuBuffer.From<float>(Ctx, b, "b");
        var t = variant.Tiling();
        string what = $"{variant} {Shapes[shape]} rate {rate} alpha {alpha} {activation}";
        var got = GateAgainstProductThenActivation(Ctx, a, gb, spec, ActivationPrecision.Fp32, rate, activation, keepsC: true,
                                                   (g, ga, gbb, gc, s, e) => MatMulKernel.Run(g, ga, gbb, gc, s, t, epilogue: e), what);
        var inside = InC(spec, got.Length);
        Check.Close(Composed(a, b, spec, ActivationPrecision.Fp32, rate, activation).Where((_, i) => inside[i]).ToArray(), got.Where((_, i) => inside[i]).ToArray(),
                    1e-4, what + " against the references composed");
        // An inference forward does not keep the product: C untouched, H the same.
        GateAgainstProductThenActivation(Ctx, a, gb, spec, ActivationPrecision.Fp32, rate, activation, keepsC: false,
                                         (g, ga, gbb, gc, s, e) => MatMulKernel.Run(g, ga, gbb, gc, s, t, epilogue: e), what + " C not kept");
    }

    /// <summary>16-bit a, C and H (matmul_half, and the matrix units' staged store): b narrowed as
    /// stored and the activation of a and b as stored, bit for bit the product then the gated
    /// activation of the same storage, and on the portable kernels within a unit of the storage's
    /// last place of the references composed in it (the matrix units round their operands to
    /// fp16, which those references do not: their products against references are
    /// MatMulMatrixUnits16Tests').</summary>
    [SkippableTheory]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.Streamed, 0.25f, false), InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0.25f, false)]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.StagedSmall, 0f, false), InlineData(ActivationPrecision.Fp16, MatMulVariant.Streamed, 0f, false)]
    [InlineData(ActivationPrecision.Bf16, MatMulVariant.Staged, 0.25f, true), InlineData(ActivationPrecision.Fp16, MatMulVariant.Staged, 0f, true)]
    public void SixteenBitGateIsProductThenGatedActivation(ActivationPrecision storage, MatMulVariant variant, float rate, bool matrixUnits)
    {
        var ctx = matrixUnits ? MatrixUnitsCtx : Ctx;
        foreach (int shape in new[] { 0, 1, 2 })
        {
            var spec = SpecOf(shape, shape == 1 ? -0.75f : 1f);
            var a = Check.Random(spec.M * spec.K, 1);
            var b = Check.Random(spec.N * spec.K, 2);
            using var gb = GpuBuffer.From<float>(ctx, b, "b");
            string what = $"{storage.Name()} {(matrixUnits ? "matrix units" : variant.ToString())} {Shapes[shape]} rate {rate}";
            var got = GateAgainstProductThenActivation(ctx, a, gb, spec, storage, rate, GateActivation.GeluTanh, keepsC: true,
                                                       MatMulVariants.Runner(ctx, variant, matrixUnits), what);
            if (matrixUnits) continue;
            var inside = InC(spec, got.Length);
            var expected = Composed(a, b, spec, storage, rate, GateActivation.GeluTanh);
            // The product's sums differ from the reference's in their last fp32 bits, which may
            // move b's rounding by one unit of the storage, and the activation of it likewise.
            Check.Close(expected.Where((_, i) => inside[i]).ToArray(), got.Where((_, i) => inside[i]).ToArray(),
                        4 * StoredActivations.Ulp(storage), what + " against the references composed");
        }
    }

    /// <summary>The matrix units (or their emulation) with a bf16 weight: every tile, interior ones
    /// of 4-aligned rows with alpha 1 and no dropout included, takes the staged store with the
    /// gate, bit for bit the product (stored directly or staged) then the gated activation.</summary>
    [SkippableTheory]
    [InlineData(256, 128, 96, 0f, 1f), InlineData(256, 128, 96, 0.25f, 1f), InlineData(200, 136, 100, 0.25f, -0.75f)]
    public void MatrixUnitsGateIsProductThenGatedActivation(int m, int n, int k, float rate, float alpha)
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(m, n, k, transposeB: true) with { Alpha = alpha };
        var a = Check.Random(m * k, 1);
        using var gb = Bf16Weight(ctx, Check.Random(n * k, 2));
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
        {
            var t = tiling.Fits(ctx) ? tiling : tiling with { SharedK = 16 };
            GateAgainstProductThenActivation(ctx, a, gb, spec, ActivationPrecision.Fp32, rate, GateActivation.GeluTanh, keepsC: rate == 0,
                                             (g, ga, gbb, gc, s, e) => MatMulKernel.RunOnMatrixUnits(g, ga, gbb, gc, s, t, WeightPrecision.Bf16, epilogue: e),
                                             $"coopmat {t} {m}x{n}x{k} rate {rate} alpha {alpha}");
        }
    }

    /// <summary><paramref name="b"/> rounded to bf16 in place, uploaded as a bf16 weight.</summary>
    internal static GpuBuffer Bf16Weight(GpuContext ctx, float[] b)
    {
        HalfFloat.Round(b, WeightPrecision.Bf16);
        var bits = new ushort[b.Length];
        HalfFloat.Encode(b, bits, WeightPrecision.Bf16);
        return GpuBuffer.From<ushort>(ctx, bits, "b");
    }

    /// <summary>The gate and the relu exclude accumulating; their operands go with them in the spec
    /// and not with the residual's; the gate a and the hidden H are stored as C is and span C's
    /// range. Each refused before anything is recorded.</summary>
    [Fact]
    public void MisfitActivationEpiloguesAreRefused()
    {
        var spec = MatMulSpec.Rows(8, 8, 8, transposeB: true);
        var gated = spec with { Epilogue = MatMulEpilogue.Gate };
        using var f32 = new GpuBuffer(Ctx, 4 * 64, "f32");
        using var h = new GpuBuffer(Ctx, 4 * 64, "h");
        using var small = new GpuBuffer(Ctx, 4 * 63, "small");
        using var g = new CommandGraph(Ctx);
        var t = MatMulTiling.Streamed;
        MatMulEpilogueOperands<GpuBuffer> Gate(GpuBuffer a, GpuBuffer hidden) => MatMulEpilogueOperands<GpuBuffer>.Gated(a, new MatMulGate<GpuBuffer>(hidden, GateActivation.GeluTanh, true));
        void Throws(string expected, Action run) =>
            Assert.Contains(expected, Assert.Throws<ArgumentException>(run).Message, StringComparison.Ordinal);
        Throws("not both", () => MatMulKernel.Run(g, f32, f32, f32, gated with { Accumulate = true }, t, epilogue: Gate(f32, h)));
        Throws("needs its operands", () => MatMulKernel.Run(g, f32, f32, f32, gated, t));
        Throws("spec has the Residual epilogue", () => MatMulKernel.Run(g, f32, f32, f32, spec with { Epilogue = MatMulEpilogue.Residual }, t, epilogue: Gate(f32, h)));
        Throws("Residual epilogue given", () => MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Residual(f32)));
        var relu = spec with { Epilogue = MatMulEpilogue.Relu };
        Throws("not both", () => MatMulKernel.Run(g, f32, f32, f32, relu with { Accumulate = true }, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Relu()));
        Throws("the Relu epilogue needs its operands", () => MatMulKernel.Run(g, f32, f32, f32, relu, t));
        Throws("Relu epilogue given for a product whose spec has the Gate epilogue", () => MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Relu()));
        Throws("Gate epilogue given for a product whose spec has the Relu epilogue", () => MatMulKernel.Run(g, f32, f32, f32, relu, t, epilogue: Gate(f32, h)));
        Throws("gate small holds 63 elements, but C's range spans 64", () => MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: Gate(small, h)));
        Throws("hidden small holds 63 elements", () => MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: Gate(f32, small)));
        if (ActivationPrecision.Bf16.IsSupported(Ctx.Capabilities))
        {
            using var bf16 = GpuBuffer.Activations(Ctx, 64, ActivationPrecision.Bf16, "bf16");
            Throws("a is read as C is", () => MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: Gate(bf16, h)));
            Throws("H is written as C is", () => MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: Gate(f32, bf16)));
        }
        Assert.Equal(0, g.DispatchCount);
        MatMulKernel.Run(g, f32, f32, f32, gated, t, epilogue: Gate(f32, h));
        MatMulKernel.Run(g, f32, f32, f32, relu, t, epilogue: MatMulEpilogueOperands<GpuBuffer>.Relu());
        Assert.Equal(2, g.DispatchCount);
    }
}
