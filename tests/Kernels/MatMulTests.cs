using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Kernels;

/// <summary>Which of matmul.comp's variants and tilings a test forces, whatever the device would
/// pick: the streamed one, and the staged one with each of its two named tilings.</summary>
public enum MatMulVariant { Streamed, Staged, StagedSmall }

/// <summary>How the kernel tests run a <see cref="MatMulVariant"/>, or the matrix units.</summary>
static class MatMulVariants
{
    public static MatMulTiling Tiling(this MatMulVariant v) => v switch
    {
        MatMulVariant.Streamed => MatMulTiling.Streamed,
        MatMulVariant.Staged => MatMulTiling.Staged,
        _ => MatMulTiling.StagedSmall,
    };

    /// <summary>The product with an fp32 weight B on the matrix units at their small tiling (its
    /// shallow form where the device's shared memory needs it) where <paramref name="matrixUnits"/>,
    /// else on the portable kernel at <paramref name="v"/>'s tiling, as the epilogue tests run it.</summary>
    public static Action<CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, MatMulSpec, MatMulEpilogueOperands<GpuBuffer>?> Runner(GpuContext ctx, MatMulVariant v, bool matrixUnits)
    {
        if (!matrixUnits) return (g, a, b, c, s, e) => MatMulKernel.Run(g, a, b, c, s, v.Tiling(), epilogue: e);
        var units = MatrixUnitsTiling.Small.Fits(ctx) ? MatrixUnitsTiling.Small : MatrixUnitsTiling.Small with { SharedK = 16 };
        return (g, a, b, c, s, e) => MatMulKernel.RunOnMatrixUnits(g, a, b, c, s, units, WeightPrecision.Fp32, epilogue: e);
    }
}

[Collection(GpuCollections.Kernels)]
public sealed class MatMulTests(GpuFixture f) : GpuTest(f)
{
    // Every product is summed in fp32 along k in order on the device and by SIMD dot products on
    // the host; for K ≤ 300 random terms in [-1, 1] the two orders differ by ~1e-7 of the largest
    // output, two orders of magnitude inside this bound, which every test here states.
    const double Tolerance = 1e-5;


    static int Round4(int x) => (x + 3) / 4 * 4;

    /// <summary>Row-major op(A)·op(B). Unpadded shapes run through an orthogonal array over the
    /// awkward sizes: every pair of sizes meets in every pair of (M, N, K) positions once, 25
    /// shapes instead of 125. Padded shapes round the leading dimensions up to multiples of 4,
    /// which switches both variants to float4 loads along k, m and n (with a K tail) depending
    /// on the transposes; with M, N multiples of 4 for the streamed variant, and with M and N
    /// past 128 for the staged one, whose 128x128 blocks then meet interior tiles, edge tiles
    /// and (for M, N not multiples of 4) float4 groups that straddle the edge.</summary>
    public static TheoryData<bool, bool, int, int, int, bool, MatMulVariant> RowsCases()
    {
        var data = new TheoryData<bool, bool, int, int, int, bool, MatMulVariant>();
        foreach (var v in Enum.GetValues<MatMulVariant>())
            foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
                foreach (var (m, n, k, padded) in RowsShapes())
                    data.Add(ta, tb, m, n, k, padded, v);
        return data;
    }

    static List<(int M, int N, int K, bool Padded)> RowsShapes()
    {
        var s = Check.AwkwardSizes;
        var shapes = new List<(int, int, int, bool)>();
        for (int i = 0; i < s.Length; i++)
            for (int j = 0; j < s.Length; j++)
                shapes.Add((s[i], s[j], s[(i + j) % s.Length], false));
        shapes.AddRange([(36, 20, 33, true), (300, 4, 7, true), (4, 300, 129, true), (8, 12, 1, true), (300, 264, 300, true), (130, 135, 37, true)]);
        return shapes;
    }

    static MatMulSpec RowsSpec(bool ta, bool tb, int m, int n, int k, bool padded)
    {
        var spec = MatMulSpec.Rows(m, n, k, ta, tb);
        return !padded ? spec : spec with
        {
            AStrideM = ta ? 1 : Round4(k), AStrideK = ta ? Round4(m) : 1,
            BStrideK = tb ? 1 : Round4(n), BStrideN = tb ? Round4(k) : 1,
            CStrideM = Round4(n) + 4,
        };
    }

    [Theory, MemberData(nameof(RowsCases))]
    public void RowsMatchReference(bool transposeA, bool transposeB, int m, int n, int k, bool padded, MatMulVariant variant)
    {
        var spec = RowsSpec(transposeA, transposeB, m, n, k, padded);
        // Padding is filled with NaN in A and B so a read outside the declared matrices shows.
        int aLen = transposeA ? spec.AStrideK * (k - 1) + m : spec.AStrideM * (m - 1) + k;
        int bLen = transposeB ? spec.BStrideN * (n - 1) + k : spec.BStrideK * (k - 1) + n;
        var a = WithNaNPadding(aLen, 1, i => transposeA ? (i % spec.AStrideK) < m : (i % spec.AStrideM) < k);
        var b = WithNaNPadding(bLen, 2, i => transposeB ? (i % spec.BStrideN) < k : (i % spec.BStrideK) < n);
        var c = Check.Random(spec.CStrideM * m, 3);
        Compare(a, b, c, spec, variant, $"{(transposeA ? "Aᵀ" : "A")}·{(transposeB ? "Bᵀ" : "B")} {m}x{n}x{k}");
    }

    /// <summary>The named staged tilings besides the two every theory runs (the deep and the narrow
    /// one), and ones VKPROMPT_MATMUL_TILING may ask for: slots that do not divide evenly among
    /// the invocations, rows whose word count narrows the swizzle (24 and 4 vec4 words), a slice
    /// as deep as the swizzle goes (32). Each fills both operands along k (transposed stores),
    /// along m and n, and element by element.</summary>
    public static TheoryData<int, bool, bool, int, int, int, bool> OtherTilingCases()
    {
        var data = new TheoryData<int, bool, bool, int, int, int, bool>();
        for (int t = 0; t < OtherTilings.Length; t++)
        {
            data.Add(t, false, true, 130, 135, 37, true);
            data.Add(t, true, false, 130, 135, 37, true);
            data.Add(t, false, false, 33, 7, 129, false);
        }
        return data;
    }

    static readonly MatMulTiling[] OtherTilings = [MatMulTiling.StagedDeep, MatMulTiling.StagedNarrow, new(8, 4, 4, 8, 4), new(8, 8, 12, 4, 4), new(8, 4, 4, 4, 32)];

    [Theory, MemberData(nameof(OtherTilingCases))]
    public void OtherStagedTilingsMatchReference(int tiling, bool transposeA, bool transposeB, int m, int n, int k, bool padded)
    {
        var spec = RowsSpec(transposeA, transposeB, m, n, k, padded);
        int aLen = transposeA ? spec.AStrideK * (k - 1) + m : spec.AStrideM * (m - 1) + k;
        int bLen = transposeB ? spec.BStrideN * (n - 1) + k : spec.BStrideK * (k - 1) + n;
        var a = Check.Random(aLen, 20);
        var b = Check.Random(bLen, 21);
        var c = Check.Random(spec.CStrideM * m, 22);
        var t = OtherTilings[tiling];
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<float>(Ctx, b);
        using var gc = GpuBuffer.From<float>(Ctx, c);
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, ga, gb, gc, spec, t);
            g.Run();
        }
        MatMulReference.Run(a, b, c, spec);
        Check.Close(c, gc.Download<float>(), Tolerance, $"{t} {m}x{n}x{k}");
    }

    /// <summary>B, a weight, stored as fp16 or bf16 and read the two ways the T5 program reads
    /// one: A·Bᵀ in the forward, A·B in the backward, on the same shapes as above (the padded ones
    /// take the vectorized 16-bit fetches). The reference multiplies the rounded weights, which
    /// the device widens exactly, so the fp32 tolerance holds unchanged.</summary>
    public static TheoryData<WeightPrecision, bool, int, int, int, bool, MatMulVariant> HalfWeightCases()
    {
        var data = new TheoryData<WeightPrecision, bool, int, int, int, bool, MatMulVariant>();
        foreach (var p in new[] { WeightPrecision.Fp16, WeightPrecision.Bf16 })
            foreach (var v in Enum.GetValues<MatMulVariant>())
                foreach (bool tb in new[] { true, false })
                    foreach (var (m, n, k, padded) in RowsShapes())
                        data.Add(p, tb, m, n, k, padded, v);
        return data;
    }

    [Theory, MemberData(nameof(HalfWeightCases))]
    public void HalfWeightsMatchReferenceOnRoundedWeights(WeightPrecision precision, bool transposeB, int m, int n, int k, bool padded, MatMulVariant variant)
    {
        var spec = RowsSpec(false, transposeB, m, n, k, padded);
        int bLen = transposeB ? spec.BStrideN * (n - 1) + k : spec.BStrideK * (k - 1) + n;
        var a = Check.Random(spec.AStrideM * (m - 1) + k, 14);
        // NaN survives both roundings, so padding read by mistake still shows.
        var b = WithNaNPadding(bLen, 15, i => transposeB ? (i % spec.BStrideN) < k : (i % spec.BStrideK) < n);
        HalfFloat.Round(b, precision);
        var c = Check.Random(spec.CStrideM * m, 16);
        Compare(a, b, c, spec, variant, $"{precision} {(transposeB ? "A·Bᵀ" : "A·B")} {m}x{n}x{k}", precision);
    }

    /// <summary>B, a weight, stored as int8 rows with an fp32 scale each and read both ways, as
    /// above: A·Bᵀ reads its table's rows along k (a scale per output column), A·B across them
    /// (a scale per step of the sum). The table is B's rows of the leading dimension, padding
    /// included (padded shapes take the vectorized fetches, a word of four bytes at a time; odd
    /// row lengths put rows at odd byte offsets). The padding holds 1.5, beyond the values' ±1,
    /// so a read of it shows. The reference multiplies the dequantised weights, which the
    /// device computes exactly, so the fp32 tolerance holds unchanged.</summary>
    public static TheoryData<bool, int, int, int, bool, MatMulVariant> Int8WeightCases()
    {
        var data = new TheoryData<bool, int, int, int, bool, MatMulVariant>();
        foreach (var v in Enum.GetValues<MatMulVariant>())
            foreach (bool tb in new[] { true, false })
                foreach (var (m, n, k, padded) in RowsShapes())
                    data.Add(tb, m, n, k, padded, v);
        return data;
    }

    [Theory, MemberData(nameof(Int8WeightCases))]
    public void Int8WeightsMatchReferenceOnDequantisedWeights(bool transposeB, int m, int n, int k, bool padded, MatMulVariant variant)
    {
        var spec = RowsSpec(false, transposeB, m, n, k, padded);
        var (b, q, scales) = Int8Table(spec, transposeB, m, n, k);
        var a = Check.Random(spec.AStrideM * (m - 1) + k, 18);
        var c = Check.Random(spec.CStrideM * m, 19);
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = GpuBuffer.From<sbyte>(Ctx, q);
        using var gScales = GpuBuffer.From<float>(Ctx, scales);
        using var gc = GpuBuffer.From<float>(Ctx, c);
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, ga, gb, gc, spec, variant.Tiling(), WeightPrecision.Int8, gScales);
            g.Run();
        }
        MatMulReference.Run(a, b, c, spec);
        Check.Close(c, gc.Download<float>(), Tolerance, $"int8 {(transposeB ? "A·Bᵀ" : "A·B")} {m}x{n}x{k} ({variant})");
    }

    /// <summary>B of a RowsSpec product as an int8 table, its rows those of the leading dimension
    /// padding included (1.5 times the row's magnitude, beyond its values, so a read of it
    /// shows), row r scaled by 2^(r mod 9 - 4) so that a scale taken from the wrong row shows:
    /// the values the table stands for, its bytes in whole 32-bit words (as SplitTensor allocates
    /// them), its scales.</summary>
    static (float[] Values, sbyte[] Bytes, float[] Scales) Int8Table(in MatMulSpec spec, bool transposeB, int m, int n, int k)
    {
        int rows = transposeB ? n : k, cols = transposeB ? spec.BStrideN : spec.BStrideK;
        int used = transposeB ? k : n;
        var b = Check.Random(rows * cols, 17).Select((v, i) => (i % cols < used ? v : 1.5f) * MathF.Pow(2, i / cols % 9 - 4)).ToArray();
        var q = new sbyte[b.Length];
        var scales = new float[rows];
        Int8Rows.Encode(b, cols, q, scales);
        Int8Rows.Round(b, cols);
        return (b, [.. q, .. new sbyte[(4 - q.Length % 4) % 4]], scales);
    }

    /// <summary>Where the matrix units take 16-bit weights, they take int8 ones read as A·Bᵀ (the
    /// forward's products) through the int8 build; read as A·B (the backward's) int8 stays on
    /// matmul_int8; never the workgroup-scope kernel.</summary>
    [SkippableFact]
    public void Int8WeightsGoToTheMatrixUnitsReadAsABt()
    {
        var forward = MatMulSpec.Rows(64, 64, 64, transposeB: true);
        var backward = MatMulSpec.Rows(64, 64, 64);
        Assert.Equal(Ctx.UsesMatrixUnits ? MatMulKernel.MatrixUnitsShader(Ctx, WeightPrecision.Int8) : "matmul_int8", MatMulKernel.Selection(Ctx, forward, WeightPrecision.Int8).Kernel);
        Assert.Equal("matmul_int8", MatMulKernel.Selection(Ctx, backward, WeightPrecision.Int8).Kernel);
        var onUnits = MatMulKernel.Selection(MatrixUnitsCtx, forward, WeightPrecision.Int8).Kernel;
        Assert.True(MatMulKernel.IsMatrixUnitsKernel(onUnits));
        Assert.StartsWith("matmul_coopmat_int8", onUnits, StringComparison.Ordinal);
        Assert.Equal("matmul_int8", MatMulKernel.Selection(MatrixUnitsCtx, backward, WeightPrecision.Int8).Kernel);
        Assert.Equal("matmul_int8", MatMulKernel.Selection(MatrixUnitsAllProductsCtx, backward, WeightPrecision.Int8).Kernel);
        Assert.Equal(WeightPrecision.Int8, MatrixUnitsCtx.Plan.StoredPrecision(WeightPrecision.Int8));
        Assert.False(MatrixUnitsCtx.Plan.OnWorkgroupScope(forward, WeightPrecision.Int8));
        // Asked for directly, A·B is refused before anything is recorded.
        using var buffer = new GpuBuffer(MatrixUnitsCtx, 64 * 64 * 4);
        using var g = new CommandGraph(MatrixUnitsCtx);
        var e = Assert.Throws<ArgumentException>(() => MatMulKernel.RunOnMatrixUnits(g, buffer, buffer, buffer, backward, MatrixUnitsTiling.Small, WeightPrecision.Int8, bScales: buffer));
        Assert.Contains("A·Bᵀ", e.Message, StringComparison.Ordinal);
    }

    /// <summary>The matrix-unit product with an int8 B read as A·Bᵀ, on the extreme tilings and
    /// the shapes of <see cref="MatrixUnitsCases"/>, unpadded and padded (odd row lengths put rows
    /// at odd byte offsets, padded ones take the word fetches) and with alpha and accumulation:
    /// the bytes enter the units exactly and each column is scaled as it is stored, so the
    /// reference multiplies A rounded to fp16 by the dequantised B, within that test's bound.</summary>
    public static TheoryData<int, int, int, bool, int, float, bool> MatrixUnitsInt8Cases()
    {
        var data = new TheoryData<int, int, int, bool, int, float, bool>();
        foreach (var row in MatrixUnitsCases().Where(r => (WeightPrecision)r[0] == WeightPrecision.Fp32 && (bool)r[1]))
            data.Add((int)row[2], (int)row[3], (int)row[4], (bool)row[5], (int)row[6], 1f, false);
        data.Add(200, 136, 100, true, 2, 0.5f, true);
        data.Add(256, 128, 96, false, 3, 1f, true);
        return data;
    }

    [SkippableTheory, MemberData(nameof(MatrixUnitsInt8Cases))]
    public void MatrixUnitsMatchesReferenceOnInt8Weights(int m, int n, int k, bool padded, int tiling, float alpha, bool accumulate)
    {
        var ctx = MatrixUnitsCtx;
        var spec = RowsSpec(false, true, m, n, k, padded) with { Alpha = alpha, Accumulate = accumulate };
        var (b, q, scales) = Int8Table(spec, true, m, n, k);
        var a = Check.Random(spec.AStrideM * (m - 1) + k, 18);
        var c = Check.Random(spec.CStrideM * m, 19);
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var gb = GpuBuffer.From<sbyte>(ctx, q);
        using var gScales = GpuBuffer.From<float>(ctx, scales);
        using var gc = GpuBuffer.From<float>(ctx, c);
        using (var g = new CommandGraph(ctx))
        {
            MatMulKernel.RunOnMatrixUnits(g, ga, gb, gc, spec, Fitting(ctx, MatrixUnitsTilings[tiling]), WeightPrecision.Int8, bScales: gScales);
            g.Run();
        }
        HalfFloat.Round(a, WeightPrecision.Fp16);
        MatMulReference.Run(a, b, c, spec);
        Check.Close(c, gc.Download<float>(), 1e-3, $"coopmat {MatrixUnitsTilings[tiling]} int8 A·Bᵀ {m}x{n}x{k} alpha {alpha} accumulate {accumulate}");
    }

    /// <summary>The matrix-unit product (on the device's matrix units, else emulated) on the
    /// shapes above, with tile shapes from one 16x16 tile per workgroup to the default, so edges
    /// fall inside tiles, on tile borders and past them. The reference multiplies A rounded to
    /// fp16 and B rounded to its storage precision (fp32: the products VKPROMPT_MATRIX_UNITS=all puts
    /// there) and then to fp16, to nearest. Vulkan lets a
    /// device round the conversion toward zero instead, which moves each A by up to 2^-10 of
    /// itself, one way: about 2^-11/3 ≈ 1.6e-4 of the largest output for these random operands.
    /// A misplaced tile or a lost slice errs by the order of the outputs themselves.</summary>
    public static TheoryData<WeightPrecision, bool, int, int, int, bool, int> MatrixUnitsCases()
    {
        var data = new TheoryData<WeightPrecision, bool, int, int, int, bool, int>();
        foreach (var p in new[] { WeightPrecision.Fp16, WeightPrecision.Bf16, WeightPrecision.Fp32 })
            // An fp32 B changes only the fill, so it takes the extreme tilings, not every one
            // (each case's pipelines cost lavapipe a compile on a cold CI machine).
            for (int t = 0; t < MatrixUnitsTilings.Length; t += p == WeightPrecision.Fp32 ? MatrixUnitsTilings.Length - 1 : 1)
                foreach (bool tb in new[] { true, false })
                    foreach (var (m, n, k, padded) in RowsShapes().Where((_, i) => i % MatrixUnitsTilings.Length == t).Append((300, 200, 520, false)))
                        data.Add(p, tb, m, n, k, padded, t);
        return data;
    }

    static readonly MatrixUnitsTiling[] MatrixUnitsTilings = [new(1, 1, 1, 1, 16), new(2, 1, 1, 2, 16), MatrixUnitsTiling.Small, MatrixUnitsTiling.Default];

    // A tiling as the device's shared memory holds it: 16 deep where it lacks room for a deeper
    // slice (lavapipe's 32 KiB against the default's 48), the same blocks and subgroups.
    static MatrixUnitsTiling Fitting(GpuContext ctx, MatrixUnitsTiling t) => t.Fits(ctx) ? t : t with { SharedK = 16 };

    [SkippableTheory, MemberData(nameof(MatrixUnitsCases))]
    public void MatrixUnitsMatchesReferenceOnRoundedOperands(WeightPrecision precision, bool transposeB, int m, int n, int k, bool padded, int tiling)
    {
        var spec = RowsSpec(false, transposeB, m, n, k, padded);
        MatrixUnitsCompare(spec, precision, MatrixUnitsTilings[tiling], $"coopmat {MatrixUnitsTilings[tiling]} {precision} {(transposeB ? "A·Bᵀ" : "A·B")} {m}x{n}x{k}");
    }

    /// <summary>Products of two fp32 operands stay on the portable kernel unless every product is
    /// asked onto the matrix units (VKPROMPT_MATRIX_UNITS=all); 16-bit weights go there either way.</summary>
    [SkippableFact]
    public void OnlyAllProductsPutsFp32OperandsOnTheMatrixUnits()
    {
        var spec = MatMulSpec.Rows(64, 64, 64, false, true);
        Assert.Equal("matmul", MatMulKernel.Selection(MatrixUnitsCtx, spec, WeightPrecision.Fp32).Kernel);
        Assert.True(MatMulKernel.IsMatrixUnitsKernel(MatMulKernel.Selection(MatrixUnitsCtx, spec, WeightPrecision.Bf16).Kernel));
        Assert.True(MatMulKernel.IsMatrixUnitsKernel(MatMulKernel.Selection(MatrixUnitsAllProductsCtx, spec, WeightPrecision.Fp32).Kernel));
    }

    /// <summary>Whole interior tiles with 4-aligned rows of C take the direct way between C and
    /// the matrix units: scaled by alpha, or started from C when summing onto it with alpha 1;
    /// summing with another alpha goes through shared memory. Each on block tiles that are all
    /// interior and on ones with an edge, for both layouts of B.</summary>
    [SkippableTheory]
    [InlineData(256, 128, 96, 1.0f, true), InlineData(256, 128, 96, 0.5f, false), InlineData(256, 128, 96, 0.5f, true)]
    [InlineData(200, 136, 100, 1.0f, true), InlineData(200, 136, 100, 0.5f, false)]
    public void MatrixUnitsScalesAndAccumulatesOnC(int m, int n, int k, float alpha, bool accumulate)
    {
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
            foreach (bool tb in new[] { true, false })
            {
                var spec = MatMulSpec.Rows(m, n, k, false, tb) with { Alpha = alpha, Accumulate = accumulate };
                MatrixUnitsCompare(spec, WeightPrecision.Bf16, tiling, $"coopmat {tiling} alpha {alpha} accumulate {accumulate} {(tb ? "A·Bᵀ" : "A·B")} {m}x{n}x{k}");
            }
    }

    /// <param name="tiling">null: the kernel and tiling <see cref="MatMulKernel.Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision, GpuBuffer?, MatMulEpilogueOperands{GpuBuffer}?)"/> chooses.</param>
    /// <param name="ctx">null: <see cref="GpuTest.MatrixUnitsCtx"/>.</param>
    void MatrixUnitsCompare(MatMulSpec spec, WeightPrecision precision, MatrixUnitsTiling? tiling, string what, bool halfA = false, bool halfB = false, GpuContext? ctx = null)
    {
        ctx ??= MatrixUnitsCtx;
        var (aLen, bLen, cLen) = spec.Extents();
        // NaN wherever the product reads nothing, in A too: past K it would meet B's zeros, which
        // hide any other value.
        var aUsed = Used(aLen, spec.AOffset, (spec.Batch1, spec.AStrideBatch1), (spec.Batch2, spec.AStrideBatch2), (spec.M, spec.AStrideM), (spec.K, spec.AStrideK));
        var bUsed = Used(bLen, spec.BOffset, (spec.Batch1, spec.BStrideBatch1), (spec.Batch2, spec.BStrideBatch2), (spec.K, spec.BStrideK), (spec.N, spec.BStrideN));
        var a = WithNaNPadding((int)aLen, 17, i => aUsed[i]);
        var b = WithNaNPadding((int)bLen, 18, i => bUsed[i]);
        HalfFloat.Round(b, precision);
        var c = Check.Random((int)cLen, 19);
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var gb = precision == WeightPrecision.Fp32 ? GpuBuffer.From<float>(ctx, b) : GpuBuffer.From<ushort>(ctx, Encode(b, precision));
        using var gc = GpuBuffer.From<float>(ctx, c);
        using (var g = new CommandGraph(ctx))
        {
            if (tiling is { } t) MatMulKernel.RunOnMatrixUnits(g, ga, gb, gc, spec, Fitting(ctx, t), precision, halfA, halfB);
            else MatMulKernel.Run(g, ga, gb, gc, spec, precision);
            g.Run();
        }
        HalfFloat.Round(a, WeightPrecision.Fp16);
        HalfFloat.Round(b, WeightPrecision.Fp16);
        MatMulReference.Run(a, b, c, spec);
        Check.Close(c, gc.Download<float>(), 1e-3, what);
    }

    /// <summary>The product reading the 16-bit copy of A that to_half.comp makes
    /// (VKPROMPT_MATRIX_UNITS_HALF_A), A's rows along k or (transposed, the backward's Pᵀ·dO form)
    /// along m, with and without padded rows, through 16-bit and fp32 B: the same results as
    /// rounding A in the fill, to the same bound.</summary>
    [SkippableTheory]
    [InlineData(false, true, 300, 264, 300, true, WeightPrecision.Bf16), InlineData(false, false, 130, 135, 37, true, WeightPrecision.Fp16)]
    [InlineData(true, true, 36, 20, 33, true, WeightPrecision.Bf16), InlineData(true, false, 200, 136, 100, false, WeightPrecision.Fp32)]
    [InlineData(false, true, 31, 17, 9, false, WeightPrecision.Fp16)]
    public void MatrixUnitsReadsAHalfCopyOfA(bool transposeA, bool transposeB, int m, int n, int k, bool padded, WeightPrecision precision)
    {
        var spec = RowsSpec(transposeA, transposeB, m, n, k, padded);
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
            MatrixUnitsCompare(spec, precision, tiling, $"coopmat half A {tiling} {precision} {(transposeA ? "Aᵀ" : "A")}·{(transposeB ? "Bᵀ" : "B")} {m}x{n}x{k}", halfA: true);
    }

    /// <summary>A product of two fp32 activations (VKPROMPT_MATRIX_UNITS=all) reading 16-bit copies of
    /// both, or of B alone, in attention's per-head layouts (strided rows, batches of heads): the
    /// same results as rounding them in the fill.</summary>
    [SkippableTheory]
    [InlineData(Attention.QKt, true), InlineData(Attention.PV, false), InlineData(Attention.PtV, true)]
    public void MatrixUnitsReadsHalfCopiesOfAttentionOperands(Attention form, bool halfA)
    {
        var spec = form switch
        {
            Attention.QKt => MatMulSpec.AttentionQKt(2, 3, 33, 40, 16),
            Attention.PV => MatMulSpec.AttentionPV(2, 3, 33, 40, 16),
            _ => MatMulSpec.AttentionPtV(2, 3, 33, 40, 16),
        };
        MatrixUnitsCompare(spec, WeightPrecision.Fp32, MatrixUnitsTiling.Small, $"coopmat half copies {form}", halfA, halfB: true);
    }

    /// <summary>Where the matrix units read the weights, bf16 ones are stored as the fp16 halves
    /// the units multiply (VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS), converted once on upload: the products
    /// are bit for bit those of bf16 weights converted in the kernel's fill, and a context without
    /// matrix units keeps bf16.</summary>
    [SkippableFact]
    public void Bf16WeightsStoredAsFp16GiveTheSameProducts()
    {
        var ctx = MatrixUnitsCtx;
        Assert.Equal(WeightPrecision.Fp16, ctx.Plan.StoredPrecision(WeightPrecision.Bf16));
        Assert.Equal(WeightPrecision.Fp16, ctx.Plan.StoredPrecision(WeightPrecision.Fp16));
        Assert.Equal(WeightPrecision.Fp32, ctx.Plan.StoredPrecision(WeightPrecision.Fp32));
        if (!Ctx.UsesMatrixUnits) Assert.Equal(WeightPrecision.Bf16, Ctx.Plan.StoredPrecision(WeightPrecision.Bf16));

        const int m = 130, n = 72, k = 96;
        var spec = MatMulSpec.Rows(m, n, k, transposeB: true);
        var a = Check.Random(m * k, 40);
        var w = Check.Random(n * k, 41);
        // Large weights too, which the conversion saturates as the fill does.
        w[3] = 9e4f;
        w[4] = -1.2e5f;
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var asBf16 = GpuBuffer.From<ushort>(ctx, Encode(w, WeightPrecision.Bf16));
        using var table = new SplitTensor(ctx, n, k, "w", ctx.Plan.StoredPrecision(WeightPrecision.Bf16), WeightPrecision.Bf16);
        table.Upload(w);
        Assert.Single(table.Chunks);
        var outputs = new[] { new GpuBuffer(ctx, m * n * 4), new GpuBuffer(ctx, m * n * 4) };
        try
        {
            using (var g = new CommandGraph(ctx))
            {
                MatMulKernel.Run(g, ga, asBf16, outputs[0], spec, WeightPrecision.Bf16);
                MatMulKernel.Run(g, ga, table.Chunks[0].Buffer, outputs[1], spec, table.Precision);
                g.Run();
            }
            var fromBf16 = outputs[0].Download<float>();
            Assert.Equal(fromBf16, outputs[1].Download<float>());
            Assert.Contains(fromBf16, v => Math.Abs(v) > 1e4f);
        }
        finally
        {
            foreach (var o in outputs) o.Dispose();
        }
    }

    /// <summary>The workgroup-scope kernel of VK_NV_cooperative_matrix2 (VKPROMPT_MATRIX_UNITS=nv2,all),
    /// on devices that have it (NVIDIA's; skipped elsewhere, lavapipe in CI among them): every
    /// layout of A and B it takes (along k or along m / n), edges inside its blocks and past K's
    /// last slice, padded rows, alpha and accumulation, batches of attention heads with fp32 B
    /// copied to fp16, against the reference on fp16-rounded operands, to the bound of the other
    /// matrix-unit kernels.</summary>
    [SkippableFact]
    public void WorkgroupScopeMatchesReferenceOnRoundedOperands()
    {
        Skip.IfNot(Ctx.Capabilities.CooperativeMatrix2Nv && Kernel.IsEmbedded(DevicePlan.Nv2MatMulShader),
                   $"{Ctx.Capabilities.Name} lacks VK_NV_cooperative_matrix2's workgroup scope, or this build its kernel");
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with
        {
            Validation = true, PipelineCacheDirectory = null, MatrixUnits = MatrixUnitsRequest.Nv2, MatrixUnitsAllProducts = true,
        });
        Assert.Equal(MatrixUnits.Nv2, ctx.MatrixUnits);
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { true, false })
                foreach (var (m, n, k, padded) in new[] { (300, 264, 300, true), (129, 33, 7, false), (512, 512, 128, false) })
                {
                    var spec = RowsSpec(ta, tb, m, n, k, padded);
                    Assert.Equal(DevicePlan.Nv2MatMulShader, MatMulKernel.Selection(ctx, spec, WeightPrecision.Fp16).Kernel);
                    MatrixUnitsCompare(spec, WeightPrecision.Fp16, null, $"nv2 {(ta ? "Aᵀ" : "A")}·{(tb ? "Bᵀ" : "B")} {m}x{n}x{k}", ctx: ctx);
                }
        foreach (var (alpha, accumulate) in new[] { (1.0f, true), (0.5f, false), (0.5f, true) })
            MatrixUnitsCompare(MatMulSpec.Rows(200, 136, 100, false, true) with { Alpha = alpha, Accumulate = accumulate }, WeightPrecision.Fp16, null,
                           $"nv2 alpha {alpha} accumulate {accumulate}", ctx: ctx);
        MatrixUnitsCompare(MatMulSpec.AttentionQKt(2, 3, 33, 40, 16), WeightPrecision.Fp32, null, "nv2 Q·Kᵀ", ctx: ctx);
        MatrixUnitsCompare(MatMulSpec.AttentionPV(2, 3, 33, 40, 16), WeightPrecision.Fp32, null, "nv2 P·V", ctx: ctx);
        MatrixUnitsCompare(MatMulSpec.AttentionPtV(2, 3, 33, 40, 16), WeightPrecision.Fp32, null, "nv2 Pᵀ·dO", ctx: ctx);
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
    }

    /// <summary>The matrix units' tile shape follows the product on a GPU (the recorded H100):
    /// 64x64 blocks where 128x128 ones would be too few to fill it, 128x64 for products at most 64
    /// columns wide (attention per head), 128x128 otherwise; a CPU device's own units (lavapipe
    /// 26.1's) take one tile a subgroup, whose pipelines compile fastest, and their emulation the
    /// GPU's rule.</summary>
    [Fact]
    public void MatrixUnitsTilingFollowsTheProductsShape()
    {
        var wide = MatMulSpec.Rows(19584, 768, 768, transposeB: true);
        var gpu = new DevicePlan(Runtime.DevicePlanTests.H100, new GpuOptions(), khrBuilt: true, nv2Built: false);
        Assert.Equal(MatrixUnitsTiling.Default, gpu.MatrixUnitsProductTiling(wide, WeightPrecision.Bf16));
        Assert.Equal(MatrixUnitsTiling.Small, gpu.MatrixUnitsProductTiling(MatMulSpec.Rows(256, 768, 768, transposeB: true), WeightPrecision.Bf16));
        Assert.Equal(MatrixUnitsTiling.Narrow, gpu.MatrixUnitsProductTiling(MatMulSpec.Rows(19584, 64, 768), WeightPrecision.Bf16));
        var cpu = Runtime.DevicePlanTests.H100 with { DeviceType = "cpu" };
        Assert.Equal(MatrixUnitsTiling.OneTile, new DevicePlan(cpu, new GpuOptions(), khrBuilt: true, nv2Built: false).MatrixUnitsProductTiling(wide, WeightPrecision.Bf16));
        Assert.Equal(MatrixUnitsTiling.Default, new DevicePlan(cpu, new GpuOptions { MatrixUnits = MatrixUnitsRequest.Emulate }, khrBuilt: true, nv2Built: false)
                                                    .MatrixUnitsProductTiling(wide, WeightPrecision.Bf16));
    }

    /// <summary>Products that read the same range of the same activation share one 16-bit copy of
    /// it (T5's q, k and v); once the activation is written, the next product converts it again
    /// and sees the new values.</summary>
    [SkippableFact]
    public void HalfCopiesAreSharedUntilTheirSourceIsWritten()
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(40, 48, 32, transposeB: true);
        var a = Check.Random(40 * 32, 30);
        var a2 = Check.Random(40 * 32, 31);
        var b = Check.Random(48 * 32, 32);
        HalfFloat.Round(b, WeightPrecision.Bf16);
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var ga2 = GpuBuffer.From<float>(ctx, a2);
        using var gb = GpuBuffer.From<ushort>(ctx, Encode(b, WeightPrecision.Bf16));
        var outputs = Enumerable.Range(0, 3).Select(_ => new GpuBuffer(ctx, 40 * 48 * 4)).ToArray();
        try
        {
            using (var g = new CommandGraph(ctx))
            {
                MatMulKernel.RunOnMatrixUnits(g, ga, gb, outputs[0], spec, MatrixUnitsTiling.Small, WeightPrecision.Bf16, halfA: true);
                MatMulKernel.RunOnMatrixUnits(g, ga, gb, outputs[1], spec, MatrixUnitsTiling.Small, WeightPrecision.Bf16, halfA: true);
                Assert.Equal(3, g.DispatchCount);
                g.Copy(ga2, ga);
                MatMulKernel.RunOnMatrixUnits(g, ga, gb, outputs[2], spec, MatrixUnitsTiling.Small, WeightPrecision.Bf16, halfA: true);
                Assert.Equal(5, g.DispatchCount);
                g.Run();
            }
            HalfFloat.Round(b, WeightPrecision.Fp16);
            foreach (var (input, output) in new[] { (a, outputs[0]), (a, outputs[1]), (a2, outputs[2]) })
            {
                HalfFloat.Round(input, WeightPrecision.Fp16);
                var expected = new float[40 * 48];
                MatMulReference.Run(input, b, expected, spec);
                Check.Close(expected, output.Download<float>(), 1e-3, "shared half copy");
            }
        }
        finally
        {
            foreach (var o in outputs) o.Dispose();
        }
    }

    /// <summary>Which products read a 16-bit copy: wide ones, with the switch on, whose A is not a
    /// strided view that would convert more than it uses.</summary>
    [Fact]
    public void HalfCopiesServeWideProductsOnly()
    {
        var on = new DevicePlan(Ctx.Capabilities, new GpuOptions { MatrixUnitsHalfActivations = true }, khrBuilt: false, nv2Built: false);
        var off = new DevicePlan(Ctx.Capabilities, new GpuOptions { MatrixUnitsHalfActivations = false }, khrBuilt: false, nv2Built: false);
        Assert.True(on.HalvesA(MatMulSpec.Rows(19584, 768, 768, transposeB: true)));
        Assert.False(off.HalvesA(MatMulSpec.Rows(19584, 768, 768, transposeB: true)));
        Assert.False(on.HalvesA(MatMulSpec.AttentionPV(32, 12, 612, 612, 64)));
        Assert.True(on.HalvesA(MatMulSpec.AttentionQKt(32, 12, 612, 612, 64)));
        Assert.False(on.HalvesA(MatMulSpec.Rows(64, 512, 64) with { AStrideM = 256 }));
        Assert.True(on.HalvesB(MatMulSpec.AttentionPV(32, 12, 612, 612, 64)));
        Assert.False(on.HalvesB(MatMulSpec.AttentionPV(32, 12, 8, 8, 64)));
        Assert.False(off.HalvesB(MatMulSpec.AttentionPV(32, 12, 612, 612, 64)));
        // Nothing to copy for a product with no work (and no range to convert).
        Assert.False(on.HalvesA(MatMulSpec.Rows(0, 768, 768)));
        Assert.False(on.HalvesA(MatMulSpec.Rows(19584, 768, 768) with { Batch1 = 0 }));
    }

    /// <summary>K as long as T5's vocabulary (the LM head's input gradient): on lavapipe the
    /// emulation's loops must stay inside the 65535 iterations an invocation may run in all,
    /// past which Mesa ends them silently (a rolled emulation stopped adding at K = 1744).</summary>
    [SkippableFact]
    public void MatrixUnitsSumsOverAVocabularyLongK() =>
        MatrixUnitsCompare(MatMulSpec.Rows(12, 64, 32128, false, false), WeightPrecision.Bf16, MatrixUnitsTiling.Small, "coopmat K 32128");

    /// <summary>An activation past fp16's range is saturated at ±65504, not turned into an
    /// infinity that would poison every sum it enters; a NaN stays NaN, as on the portable
    /// product, so that a diverged run shows.</summary>
    [SkippableFact]
    public void MatrixUnitsSaturatesActivationsPastTheHalfRange()
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(3, 1, 16, transposeB: true);
        var a = new float[48];
        a[0] = 1e6f;
        a[16] = -1e6f;
        a[32] = float.NaN;
        var b = new float[16];
        b[0] = 0.5f;
        using var ga = GpuBuffer.From<float>(ctx, a);
        using var gb = GpuBuffer.From<ushort>(ctx, Encode(b, WeightPrecision.Fp16));
        using var gc = GpuBuffer.From<float>(ctx, new float[3]);
        using (var g = new CommandGraph(ctx))
        {
            MatMulKernel.RunOnMatrixUnits(g, ga, gb, gc, spec, Fitting(ctx, MatrixUnitsTiling.Default), WeightPrecision.Fp16);
            g.Run();
        }
        Assert.Equal([32752f, -32752f, float.NaN], gc.Download<float>());
    }

    /// <summary>Which elements of an operand a product reads: offset + Σ index·stride over its dimensions.</summary>
    static bool[] Used(long length, int offset, params (int Size, int Stride)[] dims)
    {
        var used = new bool[length];
        void Mark(int d, long at)
        {
            if (d == dims.Length) { used[at] = true; return; }
            for (int i = 0; i < dims[d].Size; i++) Mark(d + 1, at + (long)i * dims[d].Stride);
        }
        Mark(0, offset);
        return used;
    }

    static float[] WithNaNPadding(int length, int seed, Func<int, bool> inside)
    {
        var x = Check.Random(length, seed);
        for (int i = 0; i < length; i++)
            if (!inside(i)) x[i] = float.NaN;
        return x;
    }

    [Theory, InlineData(MatMulVariant.Streamed), InlineData(MatMulVariant.Staged)]
    public void PaddedRowsReachEveryVectorLoad(MatMulVariant variant)
    {
        var modes = RowsCases().Select(row => ((bool)row[0], (bool)row[1], (int)row[2], (int)row[3], (int)row[4], (bool)row[5]))
            .Select(r => MatMulKernel.VectorLoads(RowsSpec(r.Item1, r.Item2, r.Item3, r.Item4, r.Item5, r.Item6), variant.Tiling()))
            .ToHashSet();
        for (int a = 0; a <= 2; a++)
            for (int b = 0; b <= 2; b++)
                Assert.Contains((a, b), modes);
    }

    public enum Attention { QKt, PV, PtV }

    /// <summary>The three per-head forms of attention, forward and backward: QKt is the scores
    /// Q·Kᵀ and dP = dO·Vᵀ; PV is P·V and dQ = dS·K; PtV is dV = Pᵀ·dO and dK = dSᵀ·Q.</summary>
    public static TheoryData<Attention, int, int, int, int, int, MatMulVariant> AttentionCases()
    {
        var data = new TheoryData<Attention, int, int, int, int, int, MatMulVariant>();
        (int B, int H, int Lq, int Lk, int D)[] shapes =
            [(2, 3, 7, 33, 1), (2, 2, 33, 7, 129), (1, 3, 300, 33, 7), (3, 2, 1, 129, 33), (2, 4, 12, 20, 64)];
        foreach (var v in Enum.GetValues<MatMulVariant>())
            foreach (var form in Enum.GetValues<Attention>())
                foreach (var (b, h, lq, lk, d) in shapes)
                    data.Add(form, b, h, lq, lk, d, v);
        return data;
    }

    [Theory, MemberData(nameof(AttentionCases))]
    public void AttentionMatchesReference(Attention form, int batch, int heads, int lq, int lk, int dkv, MatMulVariant variant)
    {
        int qLen = batch * lq * heads * dkv, kLen = batch * lk * heads * dkv, pLen = batch * heads * lq * lk;
        var (spec, aLen, bLen, cLen) = form switch
        {
            Attention.QKt => (MatMulSpec.AttentionQKt(batch, heads, lq, lk, dkv), qLen, kLen, pLen),
            Attention.PV => (MatMulSpec.AttentionPV(batch, heads, lq, lk, dkv), pLen, kLen, qLen),
            _ => (MatMulSpec.AttentionPtV(batch, heads, lq, lk, dkv), pLen, qLen, kLen),
        };
        Compare(Check.Random(aLen, 4), Check.Random(bLen, 5), Check.Random(cLen, 6), spec, variant, $"{form} B{batch} H{heads} {lq}x{lk}x{dkv}");
    }

    /// <summary>Q and K read from one fused [B, L, 3·H·dkv] projection: the same buffer is bound
    /// twice in one dispatch, with offsets and a row stride the factory does not produce.</summary>
    [Theory, InlineData(MatMulVariant.Streamed), InlineData(MatMulVariant.Staged), InlineData(MatMulVariant.StagedSmall)]
    public void FusedQkvBindsOneBufferTwice(MatMulVariant variant)
    {
        const int batch = 2, heads = 3, len = 33, dkv = 8, row = 3 * heads * dkv;
        var spec = MatMulSpec.AttentionQKt(batch, heads, len, len, dkv) with
        {
            AStrideBatch1 = len * row, AStrideM = row,
            BOffset = heads * dkv, BStrideBatch1 = len * row, BStrideN = row,
        };
        var qkv = Check.Random(batch * len * row, 7);
        var c = new float[batch * heads * len * len];
        using var gqkv = GpuBuffer.From<float>(Ctx, qkv);
        using var gc = GpuBuffer.From<float>(Ctx, c);
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, gqkv, gqkv, gc, spec, variant.Tiling());
            g.Run();
        }
        MatMulReference.Run(qkv, qkv, c, spec);
        Check.Close(c, gc.Download<float>(), Tolerance, "fused QKᵀ");
    }

    /// <summary>A, B and C as disjoint ranges of one buffer: three bindings of one VkBuffer, one
    /// of them written.</summary>
    [Fact]
    public void OperandsMayShareOneBuffer()
    {
        const int m = 7, n = 33, k = 129;
        var spec = MatMulSpec.Rows(m, n, k) with { BOffset = m * k, COffset = m * k + k * n };
        var all = Check.Random(m * k + k * n + m * n, 8);
        using var g1 = GpuBuffer.From<float>(Ctx, all);
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, g1, g1, g1, spec);
            g.Run();
        }
        MatMulReference.Run(all, all, all, spec);
        Check.Close(all, g1.Download<float>(), Tolerance, "shared buffer");
    }

    /// <summary>Alpha, accumulation and offsets on every operand; C's buffer extends on both sides
    /// of the result, and those elements must come back untouched. K = 0 leaves C·(accumulate).
    /// A C offset and row length that are multiples of 4 take the staged variant's float4 stores
    /// (with a partial group at the right edge where N is not a multiple of 4 times the block).</summary>
    [Theory]
    [InlineData(33, 7, 129, 11, MatMulVariant.Streamed)]
    [InlineData(33, 7, 129, 11, MatMulVariant.Staged)]
    [InlineData(300, 36, 20, 11, MatMulVariant.Streamed)]
    [InlineData(300, 36, 20, 12, MatMulVariant.Staged)]
    [InlineData(300, 36, 20, 12, MatMulVariant.StagedSmall)]
    [InlineData(140, 132, 20, 12, MatMulVariant.Staged)]
    [InlineData(7, 33, 0, 11, MatMulVariant.Streamed)]
    [InlineData(7, 33, 0, 11, MatMulVariant.Staged)]
    public void AccumulatesScaledIntoOffsetOutput(int m, int n, int k, int cOffset, MatMulVariant variant)
    {
        var spec = MatMulSpec.Rows(m, n, k, transposeB: true) with { AOffset = 5, BOffset = 4, COffset = cOffset, Alpha = -0.75f, Accumulate = true };
        var a = Check.Random(5 + m * k, 9);
        var b = Check.Random(4 + n * k, 10);
        var c = Check.Random(cOffset + m * n + 13, 11);
        Compare(a, b, c, spec, variant, $"accumulate {m}x{n}x{k}");
    }

    /// <summary>More batches than the device's z-dimension limit: the shader loops over the rest
    /// (the staged variant's loop is the same for both its tilings; the small one runs faster on
    /// lavapipe).</summary>
    [SkippableTheory, InlineData(MatMulVariant.Streamed), InlineData(MatMulVariant.StagedSmall)]
    public void BatchesBeyondTheGridLimitWrap(MatMulVariant variant)
    {
        long maxZ = Ctx.Capabilities.MaxWorkGroupCountZ;
        // A device with a far larger limit would need a far larger test to reach it.
        Skip.If(maxZ > 1 << 17, $"{Ctx.Capabilities.Name} dispatches {maxZ} workgroups along z: this test's batches stay below it");
        int batch2 = (int)(maxZ / 2) + 7;
        const int m = 2, n = 3, k = 5;
        var spec = new MatMulSpec
        {
            M = m, N = n, K = k, Batch1 = 2, Batch2 = batch2,
            AStrideBatch1 = batch2 * m * k, AStrideBatch2 = m * k, AStrideM = k, AStrideK = 1,
            // B is shared by every batch: a zero batch stride broadcasts it.
            BStrideK = n, BStrideN = 1,
            CStrideBatch1 = batch2 * m * n, CStrideBatch2 = m * n, CStrideM = n,
        };
        Compare(Check.Random(2 * batch2 * m * k, 12), Check.Random(k * n, 13), new float[2 * batch2 * m * n], spec, variant, "batches past the z limit");
    }

    /// <summary>The GPU tiling follows the product: 64x64 blocks where M is at most 64 or 128x128
    /// blocks would be too few to fill a large GPU, 128x64 where N is at most 64, 128x128 16 deep
    /// elsewhere, or 8 deep on a device with only 16 KiB of shared memory. Shapes of a t5-base
    /// step at batch 32, input 612 (with the prompt), target 8.</summary>
    [Theory]
    [InlineData(19584, 3072, 768, 1, "deep")]    // encoder feed-forward in
    [InlineData(612, 612, 64, 384, "deep")]      // scores per (example, head)
    [InlineData(256, 32128, 768, 1, "deep")]     // LM head over the decoder's tokens
    [InlineData(256, 768, 768, 1, "small")]      // decoder projection: 12 blocks of 128x128
    [InlineData(612, 64, 612, 384, "narrow")]    // P·V per head, 64 wide
    [InlineData(8, 612, 64, 384, "small")]       // cross-attention scores of the decoder's tokens
    [InlineData(8, 8, 64, 384, "small")]         // decoder self-attention scores
    public void GpuTilingFollowsTheProductShape(int m, int n, int k, int batch, string expected)
    {
        var spec = MatMulSpec.Rows(m, n, k) with { Batch1 = batch, AStrideBatch1 = m * k, CStrideBatch1 = m * n };
        var caps = Ctx.Capabilities with { MaxComputeSharedMemorySize = 49152 };
        var tiling = expected switch { "deep" => MatMulTiling.StagedDeep, "narrow" => MatMulTiling.StagedNarrow, _ => MatMulTiling.StagedSmall };
        Assert.Equal(tiling, MatMulTiling.ForGpu(spec, caps));
        var minimal = caps with { MaxComputeSharedMemorySize = 16384 };
        Assert.Equal(expected == "deep" ? MatMulTiling.Staged : tiling, MatMulTiling.ForGpu(spec, minimal));
    }

    /// <summary>VKPROMPT_MATMUL_TILING is checked against the device's limits and the staged
    /// variant's multiples of 4, on a device with Vulkan's minimum 16 KiB of shared memory.</summary>
    [Theory]
    [InlineData("16x16x8x8x8", null)]
    [InlineData("16x16x4x4x16", null)]
    [InlineData("8x2x3x5x0", null)]
    [InlineData("16x16x6x8x8", "multiples of 4")]
    [InlineData("16x16x8x8x6", "multiples of 4")]
    [InlineData("64x32x4x4x4", "at most 1024 invocations (2048 asked)")]
    [InlineData("16x16x8x8x16", "16384 bytes of shared memory (32768 asked)")]
    [InlineData("16x16x8x8", "expected LXxLYxTMxTNxBK")]
    public void TilingTextIsCheckedAgainstTheDevice(string text, string? error)
    {
        var caps = Ctx.Capabilities with { MaxComputeSharedMemorySize = 16384, MaxComputeWorkGroupInvocations = 1024 };
        if (error is null)
        {
            var v = text.Split('x').Select(int.Parse).ToArray();
            Assert.Equal(new MatMulTiling(v[0], v[1], v[2], v[3], v[4]), MatMulTiling.Parse(text, caps, new GpuOptions()));
        }
        else
            Assert.Contains(error, Assert.Throws<GpuException>(() => MatMulTiling.Parse(text, caps, new GpuOptions())).Message);
    }

    /// <summary>Runs the product on the device with B stored as <paramref name="bPrecision"/>
    /// (b must hold values that precision represents) and checks it against the reference.</summary>
    void Compare(float[] a, float[] b, float[] c, in MatMulSpec spec, MatMulVariant variant, string what,
                 WeightPrecision bPrecision = WeightPrecision.Fp32)
    {
        using var ga = GpuBuffer.From<float>(Ctx, a);
        using var gb = bPrecision == WeightPrecision.Fp32 ? GpuBuffer.From<float>(Ctx, b) : GpuBuffer.From<ushort>(Ctx, Encode(b, bPrecision));
        using var gc = GpuBuffer.From<float>(Ctx, c);
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, ga, gb, gc, spec, variant.Tiling(), bPrecision);
            g.Run();
        }
        MatMulReference.Run(a, b, c, spec);
        Check.Close(c, gc.Download<float>(), Tolerance, $"{what} ({variant})");
    }

    static ushort[] Encode(float[] values, WeightPrecision p)
    {
        var halves = new ushort[values.Length];
        HalfFloat.Encode(values, halves, p);
        return halves;
    }

    [Fact]
    public void ValidationNamesTheOperandOutOfRange()
    {
        var spec = MatMulSpec.Rows(7, 33, 129, transposeB: true);
        var e = Assert.Throws<ArgumentException>(() => spec.Validate(7 * 129, 33 * 129 - 1, 7 * 33));
        Assert.Contains("operand B", e.Message);
        Assert.Contains($"element {33 * 129 - 1}", e.Message);

        e = Assert.Throws<ArgumentException>(() => (spec with { AOffset = 1 }).Validate(7 * 129, 33 * 129, 7 * 33));
        Assert.Contains("operand A", e.Message);
        e = Assert.Throws<ArgumentException>(() => (spec with { CStrideM = 32 }).Validate(7 * 129, 33 * 129, 7 * 33));
        Assert.Contains("operand C", e.Message);
        Assert.Contains("overlap", e.Message);
        e = Assert.Throws<ArgumentException>(() => (spec with { BStrideN = -129 }).Validate(7 * 129, 33 * 129, 7 * 33));
        Assert.Contains("operand B", e.Message);

        // The dispatch checks the same against the buffers it is given, before recording anything.
        using var ga = new GpuBuffer(Ctx, 4 * 7 * 129);
        using var gb = new GpuBuffer(Ctx, 4 * 33 * 129);
        using var gc = new GpuBuffer(Ctx, 4 * (7 * 33 - 1));
        using var g = new CommandGraph(Ctx);
        e = Assert.Throws<ArgumentException>(() => MatMulKernel.Run(g, ga, gb, gc, spec));
        Assert.Contains("operand C", e.Message);
        Assert.Equal(0, g.DispatchCount);
    }
}
