using System.Runtime.InteropServices;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Kernels;

/// <summary>The portable product (matmul_half.comp, matmul_int8_half.comp) with A, an activation
/// B and C stored as 16-bit activations (MatMulSpec's AStorage, BStorage, CStorage), on the
/// streamed and the staged tiling, without the matrix units.
/// <para>Tolerance: the device widens every 16-bit input exactly, so the reference multiplies the
/// rounded inputs (<see cref="ActivationPrecisions.Round"/>) in fp32, and only the order of the
/// sums differs: MatMulTests' 1e-5 of the largest output. A 16-bit C is the fp32 result narrowed
/// once, so where the two orders' sums straddle a rounding boundary it may differ from the
/// rounded reference by one unit in the last place of its storage (2^-7 of the value for bf16,
/// 2^-10 for fp16): allowed per element, on top of the 1e-5. Where the sums are the same (the
/// same kernel and tiling with an fp32 C), the 16-bit C must be exactly the fp32 one rounded, bit
/// for bit, and it must differ from the unrounded result somewhere, or nothing was narrowed.</para></summary>
[Collection(GpuCollections.Kernels)]
public sealed class MatMul16Tests(GpuFixture f) : GpuTest(f)
{
    const double Tolerance = 1e-5;
    const ActivationPrecision Fp32 = ActivationPrecision.Fp32, Bf16 = ActivationPrecision.Bf16, Fp16 = ActivationPrecision.Fp16;

    /// <summary>The storages of a row-major product: A's and C's, and B's weight form.</summary>
    public enum Storages
    {
        /// <summary>A bf16, an fp32 weight, C fp32 (matmul_half, B_STORAGE fp32).</summary>
        ABf16,
        /// <summary>A fp16 and C fp16 around an fp32 weight.</summary>
        AFp16CFp16,
        /// <summary>A bf16 and C bf16 around an int8 weight (matmul_int8_half).</summary>
        ABf16Int8CBf16,
        /// <summary>A fp32 and C bf16 around a bf16 weight: only C and the weight are 16-bit.</summary>
        CBf16WeightBf16,
    }

    static (ActivationPrecision A, WeightPrecision B, ActivationPrecision C) Of(Storages s) => s switch
    {
        Storages.ABf16 => (Bf16, WeightPrecision.Fp32, Fp32),
        Storages.AFp16CFp16 => (Fp16, WeightPrecision.Fp32, Fp16),
        Storages.ABf16Int8CBf16 => (Bf16, WeightPrecision.Int8, Bf16),
        _ => (Fp32, WeightPrecision.Bf16, Bf16),
    };

    static MatMulTiling Tiling(bool staged) => staged ? MatMulTiling.Staged : MatMulTiling.Streamed;

    static int Round4(int x) => (x + 3) / 4 * 4;

    // Unpadded odd sizes fetch one element at a time; padded leading dimensions fetch four at a
    // time along k, m or n, as the transposes put them (VectorLoadsAreAllReached); 130x135 meets
    // the staged tiles' edges past a whole 128x128 block and groups of four straddling them.
    static readonly (bool TA, bool TB, int M, int N, int K, bool Padded)[] Shapes =
        [(false, true, 33, 7, 129, false), (false, true, 36, 20, 33, true), (true, false, 36, 20, 33, true), (false, false, 130, 135, 37, true), (true, true, 7, 33, 9, false)];

    static MatMulSpec RowsSpec((bool TA, bool TB, int M, int N, int K, bool Padded) s)
    {
        var spec = MatMulSpec.Rows(s.M, s.N, s.K, s.TA, s.TB);
        return !s.Padded ? spec : spec with
        {
            AStrideM = s.TA ? 1 : Round4(s.K), AStrideK = s.TA ? Round4(s.M) : 1,
            BStrideK = s.TB ? 1 : Round4(s.N), BStrideN = s.TB ? Round4(s.K) : 1,
            CStrideM = Round4(s.N) + 4,
        };
    }

    public static TheoryData<Storages, int, bool> RowsCases()
    {
        var data = new TheoryData<Storages, int, bool>();
        foreach (var s in Enum.GetValues<Storages>())
            for (int shape = 0; shape < Shapes.Length; shape++)
                foreach (bool staged in new[] { false, true })
                    data.Add(s, shape, staged);
        return data;
    }

    [Theory, MemberData(nameof(RowsCases))]
    public void RowsMatchReferenceOnRoundedInputs(Storages storages, int shape, bool staged)
    {
        var (aStorage, w, cStorage) = Of(storages);
        var sh = Shapes[shape];
        var spec = RowsSpec(sh) with { AStorage = aStorage, CStorage = cStorage };
        int aLen = sh.TA ? spec.AStrideK * (sh.K - 1) + sh.M : spec.AStrideM * (sh.M - 1) + sh.K;
        int bLen = sh.TB ? spec.BStrideN * (sh.N - 1) + sh.K : spec.BStrideK * (sh.K - 1) + sh.N;
        // Padding is NaN (which rounding keeps), so a read outside the matrices shows.
        var a = Rounded(WithNaNPadding(aLen, 1, i => sh.TA ? i % spec.AStrideK < sh.M : i % spec.AStrideM < sh.K), aStorage);
        var c = Rounded(Check.Random(spec.CStrideM * sh.M, 3), cStorage);
        var weight = w == WeightPrecision.Int8
            ? Int8Table(sh.TB ? sh.N : sh.K, sh.TB ? spec.BStrideN : spec.BStrideK)
            : new Weight(Check.Random(bLen, 2), null, null);
        if (w is WeightPrecision.Fp16 or WeightPrecision.Bf16) HalfFloat.Round(weight.Values, w);
        CheckProduct(new(a, weight.Values, c, w, weight.Bytes, weight.Scales), spec, Tiling(staged), $"{storages} {sh}");
    }

    public enum Attention { QKt, PV, PtV }

    /// <summary>The per-head products of attention, batched and strided, with A and B both bf16
    /// activations (q and k, the probabilities and v) and C fp32 or bf16.</summary>
    public static TheoryData<Attention, int, bool, ActivationPrecision> AttentionCases()
    {
        var data = new TheoryData<Attention, int, bool, ActivationPrecision>();
        foreach (var form in Enum.GetValues<Attention>())
            for (int shape = 0; shape < AttentionShapes.Length; shape++)
                foreach (bool staged in new[] { false, true })
                    data.Add(form, shape, staged, Fp32);
        data.Add(Attention.QKt, 1, false, Bf16);
        data.Add(Attention.PV, 1, true, Bf16);
        return data;
    }

    static readonly (int B, int H, int Lq, int Lk, int D)[] AttentionShapes = [(2, 3, 7, 33, 1), (2, 2, 33, 7, 64), (1, 3, 20, 12, 33)];

    [Theory, MemberData(nameof(AttentionCases))]
    public void AttentionWithBf16OperandsMatchesReference(Attention form, int shape, bool staged, ActivationPrecision cStorage)
    {
        var (batch, heads, lq, lk, dkv) = AttentionShapes[shape];
        int qLen = batch * lq * heads * dkv, kLen = batch * lk * heads * dkv, pLen = batch * heads * lq * lk;
        var (spec, aLen, bLen, cLen) = form switch
        {
            Attention.QKt => (MatMulSpec.AttentionQKt(batch, heads, lq, lk, dkv), qLen, kLen, pLen),
            Attention.PV => (MatMulSpec.AttentionPV(batch, heads, lq, lk, dkv), pLen, kLen, qLen),
            _ => (MatMulSpec.AttentionPtV(batch, heads, lq, lk, dkv), pLen, qLen, kLen),
        };
        spec = spec with { AStorage = Bf16, BStorage = Bf16, CStorage = cStorage };
        var operands = new Operands(Rounded(Check.Random(aLen, 4), Bf16), Rounded(Check.Random(bLen, 5), Bf16), Rounded(Check.Random(cLen, 6), cStorage));
        CheckProduct(operands, spec, Tiling(staged), $"{form} {AttentionShapes[shape]} C {cStorage.Name()}");
    }

    /// <summary>Accumulation into a 16-bit C: C = narrow(widen(C) + alpha·sum), with offsets on
    /// every operand; C's buffer extends on both sides of the result and those elements come back
    /// untouched. A C offset and row length that are multiples of 4 take the staged variant's
    /// four-at-a-time stores.</summary>
    [Theory]
    [InlineData(33, 7, 129, 11, false, ActivationPrecision.Bf16, ActivationPrecision.Bf16)]
    [InlineData(33, 7, 129, 11, true, ActivationPrecision.Bf16, ActivationPrecision.Bf16)]
    [InlineData(140, 132, 20, 12, true, ActivationPrecision.Bf16, ActivationPrecision.Bf16)]
    [InlineData(300, 36, 20, 12, false, ActivationPrecision.Bf16, ActivationPrecision.Bf16)]
    [InlineData(36, 20, 12, 12, true, ActivationPrecision.Fp32, ActivationPrecision.Fp16)]
    [InlineData(7, 33, 0, 11, false, ActivationPrecision.Bf16, ActivationPrecision.Bf16)]
    public void AccumulatesInto16BitC(int m, int n, int k, int cOffset, bool staged, ActivationPrecision aStorage, ActivationPrecision cStorage)
    {
        var spec = MatMulSpec.Rows(m, n, k, transposeB: true) with
        {
            AOffset = 4, BOffset = 4, COffset = cOffset, Alpha = -0.75f, Accumulate = true, AStorage = aStorage, CStorage = cStorage,
        };
        var b = Check.Random(4 + n * k, 10);
        HalfFloat.Round(b, WeightPrecision.Bf16);
        var operands = new Operands(Rounded(Check.Random(4 + m * k, 9), aStorage), b, Rounded(Check.Random(cOffset + m * n + 13, 11), cStorage), WeightPrecision.Bf16);
        CheckProduct(operands, spec, Tiling(staged), $"accumulate {m}x{n}x{k} A {aStorage.Name()} C {cStorage.Name()}");
    }

    /// <summary>The shapes above reach each way of fetching A and B, four at a time along k (1) or
    /// along m, n (2) and one at a time (0), on both tilings.</summary>
    [Fact]
    public void VectorLoadsAreAllReached()
    {
        foreach (bool staged in new[] { false, true })
        {
            var modes = Shapes.Select(s => MatMulKernel.VectorLoads(RowsSpec(s), Tiling(staged))).ToHashSet();
            Assert.Contains((0, 0), modes);
            Assert.Contains((1, 1), modes);
            Assert.Contains((2, 2), modes);
        }
    }

    /// <summary>The kernel named (what a profile and bench matmul report) is the one that runs:
    /// matmul only where every operand is fp32, the int8 builds apart.</summary>
    [Fact]
    public void TheKernelNameFollowsTheStorages()
    {
        var spec = MatMulSpec.Rows(8, 8, 8, transposeB: true);
        Assert.Equal("matmul", MatMulKernel.PortableShader(spec, WeightPrecision.Fp32));
        Assert.Equal("matmul_half", MatMulKernel.PortableShader(spec with { AStorage = Bf16 }, WeightPrecision.Fp32));
        Assert.Equal("matmul_half", MatMulKernel.PortableShader(spec with { BStorage = Fp16 }, WeightPrecision.Fp32));
        Assert.Equal("matmul_half", MatMulKernel.PortableShader(spec with { CStorage = Bf16 }, WeightPrecision.Fp32));
        Assert.Equal("matmul_half", MatMulKernel.PortableShader(spec, WeightPrecision.Bf16));
        Assert.Equal("matmul_int8", MatMulKernel.PortableShader(spec, WeightPrecision.Int8));
        Assert.Equal("matmul_int8_half", MatMulKernel.PortableShader(spec with { AStorage = Bf16 }, WeightPrecision.Int8));
        Assert.Equal("matmul_int8_half", MatMulKernel.PortableShader(spec with { CStorage = Fp16 }, WeightPrecision.Int8));
        if (!Ctx.UsesMatrixUnits)
        {
            Assert.Equal("matmul_half", MatMulKernel.Selection(Ctx, spec with { AStorage = Bf16, CStorage = Bf16 }).Kernel);
            Assert.Equal("matmul_int8_half", MatMulKernel.Selection(Ctx, MatMulSpec.Rows(8, 8, 8) with { AStorage = Bf16 }, WeightPrecision.Int8).Kernel);
        }
    }

    /// <summary>Only the builds that may meet a 16-bit operand declare 16-bit buffers, and so need
    /// the device's 16-bit storage: the fp32 and int8 products load on a device without it.</summary>
    [Theory]
    [InlineData("matmul", false)]
    [InlineData("matmul_int8", false)]
    [InlineData("matmul_half", true)]
    [InlineData("matmul_int8_half", true)]
    public void Only16BitBuildsNeed16BitStorage(string shader, bool needs)
    {
        using var s = typeof(Kernel).Assembly.GetManifestResourceStream(shader + ".spv");
        Assert.NotNull(s);
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        var words = MemoryMarshal.Cast<byte, uint>(bytes);
        const uint OpCapability = 17, StorageBuffer16BitAccess = 4433;
        bool declared = false;
        for (int at = 5; at < words.Length; at += (int)(words[at] >> 16))
            declared |= (words[at] & 0xffff) == OpCapability && words[at + 1] == StorageBuffer16BitAccess;
        Assert.Equal(needs, declared);
    }

    /// <summary>Elements are counted by each buffer's storage: a bf16 A of exactly the elements the
    /// product reads passes (read as floats it would hold half as many), one fewer word does not.</summary>
    [Fact]
    public void BuffersAreCountedByTheirStorage()
    {
        var spec = MatMulSpec.Rows(8, 8, 16, transposeB: true) with { AStorage = Bf16 };
        using var a = GpuBuffer.Activations(Ctx, 8 * 16, Bf16, "a");
        using var small = GpuBuffer.Activations(Ctx, 8 * 16 - 8, Bf16, "small");
        using var b = new GpuBuffer(Ctx, 4 * 8 * 16, "b");
        using var c = new GpuBuffer(Ctx, 4 * 8 * 8, "c");
        using var g = new CommandGraph(Ctx);
        MatMulKernel.Run(g, a, b, c, spec, MatMulTiling.Streamed);
        var e = Assert.Throws<ArgumentException>(() => MatMulKernel.Run(g, small, b, c, spec, MatMulTiling.Streamed));
        Assert.Contains("operand A", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, g.DispatchCount);
    }

    /// <summary>A buffer whose storage is not the spec's is refused before anything is recorded:
    /// 16-bit where the spec says fp32 (the kernel would read halves as floats), fp32 where it says
    /// 16-bit, a 16-bit activation given as a weight, and a 16-bit buffer as an int8 B's scales.</summary>
    [Fact]
    public void StoragesThatDifferFromTheSpecThrow()
    {
        var spec = MatMulSpec.Rows(8, 8, 8, transposeB: true);
        using var f32 = new GpuBuffer(Ctx, 4 * 64, "f32");
        using var bf16 = GpuBuffer.Activations(Ctx, 64, Bf16, "bf16");
        using var g = new CommandGraph(Ctx);
        void Throws(string expected, Action run) =>
            Assert.Contains(expected, Assert.Throws<ArgumentException>(run).Message, StringComparison.Ordinal);
        var t = MatMulTiling.Streamed;
        Throws("operand A", () => MatMulKernel.Run(g, bf16, f32, f32, spec, t));
        Throws("operand B", () => MatMulKernel.Run(g, f32, bf16, f32, spec, t));
        Throws("operand C", () => MatMulKernel.Run(g, f32, f32, bf16, spec, t));
        Throws("operand A", () => MatMulKernel.Run(g, f32, f32, f32, spec with { AStorage = Bf16 }, t));
        Throws("operand C", () => MatMulKernel.Run(g, f32, f32, f32, spec with { CStorage = Fp16 }, t));
        Throws("operand B", () => MatMulKernel.Run(g, f32, bf16, f32, spec with { BStorage = Fp16 }, t));
        // A weight's form is its precision; a 16-bit activation is no weight table.
        Throws("weight", () => MatMulKernel.Run(g, f32, bf16, f32, spec with { BStorage = Bf16 }, t, WeightPrecision.Bf16));
        Throws("operand B", () => MatMulKernel.Run(g, f32, bf16, f32, spec, t, WeightPrecision.Bf16));
        // matmul_int8_half reads 16-bit A and C only; the scales binding stays fp32.
        using var bytes = new GpuBuffer(Ctx, 64, "int8");
        Throws("binding 3", () => MatMulKernel.Run(g, bf16, bytes, f32, spec with { AStorage = Bf16 }, t, WeightPrecision.Int8, bf16));
        Assert.Equal(0, g.DispatchCount);
    }

    /// <summary>The tuner times a product with 16-bit operands on buffers stored as its spec says
    /// (the run would refuse others), apart from its fp32 twin, and the product keeps its kernel.</summary>
    [Fact]
    public void TheTunerTimesProductsWithTheirStorages()
    {
        var spec = MatMulSpec.Rows(70, 36, 33, transposeB: true) with { AStorage = Bf16, CStorage = Bf16 };
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, MatrixUnits = MatrixUnitsRequest.Off });
        var tunings = MatMulTuner.Tune(ctx, [(spec, WeightPrecision.Int8), (spec with { AStorage = Fp32, CStorage = Fp32 }, WeightPrecision.Int8)]);
        Assert.Equal(new[] { "matmul_int8_half", "matmul_int8" }, tunings.Select(t => t.Kernel));
        Assert.All(tunings, t => Assert.All(t.Candidates, c => Assert.Equal(5, c.TimesMs.Count)));
        Assert.Equal(("matmul_int8_half", tunings[0].Tiling), MatMulKernel.Selection(ctx, spec, WeightPrecision.Int8));
        Assert.Empty(ctx.Validation.Errors);
    }

    sealed record Weight(float[] Values, sbyte[]? Bytes, float[]? Scales);

    /// <summary>An int8 table of <paramref name="rows"/> rows of <paramref name="cols"/>, row r
    /// scaled by 2^(r mod 9 - 4) so that a scale taken from the wrong row shows: the values it
    /// stands for, its bytes in whole 32-bit words, its scales.</summary>
    static Weight Int8Table(int rows, int cols)
    {
        var b = Check.Random(rows * cols, 17).Select((v, i) => v * MathF.Pow(2, i / cols % 9 - 4)).ToArray();
        var q = new sbyte[b.Length];
        var scales = new float[rows];
        Int8Rows.Encode(b, cols, q, scales);
        Int8Rows.Round(b, cols);
        return new(b, [.. q, .. new sbyte[(4 - q.Length % 4) % 4]], scales);
    }

    /// <summary>A product's operands as the device holds them (every value representable in its
    /// storage): B as the weight <paramref name="W"/> is, or, fp32, as the spec's BStorage.</summary>
    sealed record Operands(float[] A, float[] B, float[] C, WeightPrecision W = WeightPrecision.Fp32, sbyte[]? Int8 = null, float[]? Scales = null);

    void CheckProduct(Operands o, in MatMulSpec spec, MatMulTiling t, string what)
    {
        var got = Run(o, spec, t);
        var exact = (float[])o.C.Clone();
        MatMulReference.Run(o.A, o.B, exact, spec);
        var expected = (float[])exact.Clone();
        ActivationPrecisions.Round(expected, spec.CStorage);
        double bound = Tolerance * expected.Where(float.IsFinite).Select(MathF.Abs).DefaultIfEmpty().Max();
        for (int i = 0; i < expected.Length; i++)
        {
            double allowed = bound + Ulp(expected[i], spec.CStorage);
            Assert.True(Math.Abs((double)got[i] - expected[i]) <= allowed, $"{what} ({t.Text}): C[{i}] is {got[i]}, expected {expected[i]} within {allowed:E2}");
        }
        if (spec.CStorage == Fp32 || spec.K == 0) return;
        Assert.True(got.Where((v, i) => v != exact[i]).Any(), $"{what}: a {spec.CStorage.Name()} C equals the unrounded result everywhere");
        var wide = Run(o, spec with { CStorage = Fp32 }, t);
        ActivationPrecisions.Round(wide, spec.CStorage);
        Check.BitIdentical(wide, got, $"{what} ({t.Text}): the {spec.CStorage.Name()} C against the fp32 C rounded");
    }

    float[] Run(Operands o, in MatMulSpec spec, MatMulTiling t)
    {
        using var a = Upload(o.A, spec.AStorage, "a");
        using var b = o.W switch
        {
            WeightPrecision.Fp32 => Upload(o.B, spec.BStorage, "b"),
            WeightPrecision.Int8 => GpuBuffer.From<sbyte>(Ctx, o.Int8!, "b"),
            _ => GpuBuffer.From<ushort>(Ctx, Encode(o.B, o.W), "b"),
        };
        using var scales = o.Scales is null ? null : GpuBuffer.From<float>(Ctx, o.Scales, "scales");
        using var c = Upload(o.C, spec.CStorage, "c");
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, a, b, c, spec, t, o.W, scales);
            g.Run();
        }
        if (spec.CStorage == Fp32) return c.Download<float>()[..o.C.Length];
        bool bf16 = spec.CStorage == Bf16;
        return c.Download<ushort>()[..o.C.Length].Select(h => bf16 ? HalfFloat.FromBf16(h) : HalfFloat.FromFp16(h)).ToArray();
    }

    GpuBuffer Upload(float[] values, ActivationPrecision p, string name)
    {
        var buffer = GpuBuffer.Activations(Ctx, values.Length, p, name);
        if (p == Fp32) buffer.Upload<float>(values);
        else buffer.Upload<ushort>(Encode(values, p == Bf16 ? WeightPrecision.Bf16 : WeightPrecision.Fp16));
        return buffer;
    }

    static float[] Rounded(float[] values, ActivationPrecision p)
    {
        ActivationPrecisions.Round(values, p);
        return values;
    }

    // One unit in the last place of x as storage p keeps it (0 for fp32: the tolerance covers it).
    static double Ulp(float x, ActivationPrecision p)
    {
        if (p == Fp32 || x == 0 || !float.IsFinite(x)) return 0;
        int exponent = (int)Math.Floor(Math.Log2(Math.Abs(x)));
        return p == Bf16 ? Math.Pow(2, exponent - 7) : Math.Pow(2, Math.Max(exponent, -14) - 10);
    }

    static ushort[] Encode(float[] values, WeightPrecision p)
    {
        var halves = new ushort[values.Length];
        HalfFloat.Encode(values, halves, p);
        return halves;
    }

    static float[] WithNaNPadding(int length, int seed, Func<int, bool> inside)
    {
        var x = Check.Random(length, seed);
        for (int i = 0; i < length; i++)
            if (!inside(i)) x[i] = float.NaN;
        return x;
    }
}
