using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>The matrix-unit product (emulated on lavapipe) with activations kept in 16 bits: A, an
/// activation B and C stored as bf16 or fp16 (<see cref="MatMulSpec.AStorage"/> and its kin),
/// read straight by the fill, with no fp16 copy made for them, and C narrowed as it is stored.
/// The reference multiplies the operands as the kernel sees them (rounded to their storage, then
/// to fp16, saturating at ±65504, for the fragments, or to bf16 for bf16 fragments; an int8
/// weight dequantised) in fp32 and rounds its output to C's storage.</summary>
/// <remarks>Tolerance, per element: 1e-3 of the largest output, the bound of the fp32 matrix-unit
/// tests in <see cref="MatMulTests"/> (a device may round the fill's fp16 conversions toward
/// zero), plus one unit in the last place of C's storage at that element (2^-7 of it for bf16,
/// 2^-10 for fp16, and fp16's smallest subnormal): the kernel's and the reference's fp32 sums,
/// added in different orders, may round to neighbouring 16-bit values. A 16-bit buffer read or
/// written as the wrong storage, a misplaced offset counted in bytes instead of elements, or a lost
/// accumulation errs by the order of the outputs themselves.
/// With bf16 fragments (<see cref="DevicePlan.MatrixUnitsOperands"/>; emulated on lavapipe) the
/// conversions are the fill's integer round-to-nearest-even, the reference's own, and a bf16·bf16
/// product is exact in fp32, so the kernel and the reference differ only in how their fp32 sums
/// round: per element at most (3K + 8)·2^-24 of |alpha|·Σ_k|a_k·b_k| + |C| (2K for sums in any
/// order rounded toward zero, as matrix units may, K for the reference's, 8 for alpha, C and the
/// store), plus the ulp of C's storage. Operands rounded to fp16 instead err by ~2^-12 of each
/// term, far past that; so do operands truncated to bf16 rather than rounded (tried: the cases
/// with fp32 or fp16 operands failed).</remarks>
[Collection(GpuCollections.Kernels)]
public sealed class MatMulMatrixUnits16Tests(GpuFixture f) : GpuTest(f)
{
    const double Tolerance = 1e-3;

    const ActivationPrecision Fp32 = ActivationPrecision.Fp32, Bf16 = ActivationPrecision.Bf16, Fp16 = ActivationPrecision.Fp16;

    static int Round4(int x) => (x + 3) / 4 * 4;

    /// <summary>What the context's fragments hold, as the storage that rounds to it (saturating, for fp16).</summary>
    static ActivationPrecision Fragments(GpuContext ctx) => ctx.Plan.Bf16Fragments ? Bf16 : Fp16;

    // A tiling as the device's shared memory holds it (lavapipe's 32 KiB: 16 deep), as in MatMulTests.
    static MatrixUnitsTiling Fitting(GpuContext ctx, MatrixUnitsTiling t) => t.Fits(ctx) ? t : t with { SharedK = 16 };

    /// <summary>Row-major op(A)·op(B); padded rows of a multiple of 4 elements take the vector fetches.</summary>
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

    /// <summary>A buffer of <paramref name="values"/> stored as <paramref name="p"/>, which are
    /// first rounded in place to what it holds.</summary>
    static GpuBuffer Stored(GpuContext ctx, float[] values, ActivationPrecision p, string name)
    {
        ActivationPrecisions.Round(values, p);
        if (p == Fp32) return GpuBuffer.From<float>(ctx, values, name);
        var buffer = GpuBuffer.Activations(ctx, values.Length, p, name);
        var halves = new ushort[values.Length];
        HalfFloat.Encode(values, halves, p == Bf16 ? WeightPrecision.Bf16 : WeightPrecision.Fp16);
        buffer.Upload<ushort>(halves);
        return buffer;
    }

    /// <summary>The first <paramref name="length"/> elements of a buffer stored as <paramref name="p"/>, as fp32.</summary>
    static float[] Read(GpuBuffer buffer, int length, ActivationPrecision p)
    {
        if (p == Fp32) return buffer.Download<float>()[..length];
        var values = new float[length];
        HalfFloat.Decode(buffer.Download<ushort>().AsSpan(0, length), values, p == Bf16 ? WeightPrecision.Bf16 : WeightPrecision.Fp16);
        return values;
    }

    /// <summary>See the class's remarks: the fp32 bound plus one unit in the last place of the
    /// stored output; with <paramref name="sums"/> (bf16 fragments) the bound of fp32 sums of
    /// exact products instead, sums[i] being the element's |alpha|·Σ|a·b| + |C|.</summary>
    static void CloseStored(float[] expected, float[] actual, ActivationPrecision p, string what, double[]? sums = null, int k = 0)
    {
        Assert.Equal(expected.Length, actual.Length);
        double largest = expected.Where(float.IsFinite).Select(v => Math.Abs((double)v)).DefaultIfEmpty(0).Max();
        double ulp = p switch { Bf16 => 1.0 / 128, Fp16 => 1.0 / 1024, _ => 0 };
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(float.IsFinite(actual[i]), $"{what}: element {i} is {actual[i]}, expected {expected[i]}");
            double sumsBound = sums is null ? Tolerance * largest : (3.0 * k + 8) * Math.Pow(2, -24) * sums[i];
            double bound = sumsBound + ulp * Math.Abs(expected[i]) + (p == Fp16 ? Math.Pow(2, -24) : 0);
            Assert.True(Math.Abs((double)actual[i] - expected[i]) <= bound,
                        $"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} within {bound:E2}");
        }
    }

    /// <summary>The B of a product: an activation (fp32 or 16-bit, <see cref="MatMulSpec.BStorage"/>)
    /// when <paramref name="weight"/> is fp32, else a weight table of that form.</summary>
    sealed record Operand(GpuBuffer Buffer, float[] Seen, GpuBuffer? Scales) : IDisposable
    {
        public void Dispose()
        {
            Buffer.Dispose();
            Scales?.Dispose();
        }
    }

    // b.Seen: B as the fragments hold it (rounded to fragments).
    static Operand WeightOrActivationB(GpuContext ctx, in MatMulSpec spec, WeightPrecision weight, int seed, ActivationPrecision fragments)
    {
        var (_, bLen, _) = spec.Extents();
        var b = Check.Random((int)bLen, seed);
        switch (weight)
        {
            case WeightPrecision.Fp32:
            {
                var buffer = Stored(ctx, b, spec.BStorage, "b");
                ActivationPrecisions.Round(b, fragments);
                return new(buffer, b, null);
            }
            case WeightPrecision.Int8:
            {
                // Read as A·Bᵀ: rows of BStrideN elements, one scale each; the bytes enter the
                // units exactly and the scale multiplies each column as C is stored.
                int cols = spec.BStrideN;
                var table = new float[(b.Length + cols - 1) / cols * cols];
                b.CopyTo(table, 0);
                var q = new sbyte[table.Length];
                var scales = new float[table.Length / cols];
                Int8Rows.Encode(table, cols, q, scales);
                Int8Rows.Round(table, cols);
                var buffer = GpuBuffer.From<sbyte>(ctx, [.. q, .. new sbyte[(4 - q.Length % 4) % 4]], "b");
                return new(buffer, table, GpuBuffer.From<float>(ctx, scales, "scales"));
            }
            default:
            {
                HalfFloat.Round(b, weight);
                var halves = new ushort[b.Length];
                HalfFloat.Encode(b, halves, weight);
                ActivationPrecisions.Round(b, fragments);
                return new(GpuBuffer.From<ushort>(ctx, halves, "b"), b, null);
            }
        }
    }

    /// <summary>Runs <paramref name="spec"/> on the matrix units (of <paramref name="on"/>, else
    /// <see cref="GpuTest.MatrixUnitsCtx"/>) asking for fp16 copies of both operands, and checks
    /// that only an fp32 B got one (the to_half dispatch before the product; none with bf16
    /// fragments), then the output against the reference. Returns the output as read.</summary>
    float[] Compare(MatMulSpec spec, WeightPrecision weight, MatrixUnitsTiling tiling, string what, Action<float[]>? setA = null, GpuContext? on = null)
    {
        var ctx = on ?? MatrixUnitsCtx;
        var fragments = Fragments(ctx);
        var (aLen, _, cLen) = spec.Extents();
        var a = Check.Random((int)aLen, 21);
        setA?.Invoke(a);
        var c = Check.Random((int)cLen, 23);
        using var ga = Stored(ctx, a, spec.AStorage, "a");
        using var b = WeightOrActivationB(ctx, spec, weight, 22, fragments);
        using var gc = Stored(ctx, c, spec.CStorage, "c");
        bool copiesB = weight == WeightPrecision.Fp32 && spec.BStorage == Fp32 && fragments == Fp16;
        Assert.Equal((false, copiesB), MatMulKernel.CopiedOperands(ctx.Plan, spec, weight, halfA: true, halfB: true));
        using (var g = new CommandGraph(ctx))
        {
            MatMulKernel.RunOnMatrixUnits(g, ga, b.Buffer, gc, spec, Fitting(ctx, tiling), weight, halfA: true, halfB: true, bScales: b.Scales);
            Assert.Equal(copiesB ? 2 : 1, g.DispatchCount);
            g.Run();
        }
        ActivationPrecisions.Round(a, fragments);
        double[]? sums = null;
        if (fragments == Bf16)
        {
            // |alpha|·Σ|a·b| (+ |C|) per element, by the reference on magnitudes.
            var magnitudes = c.Select(Math.Abs).ToArray();
            MatMulReference.Run(a.Select(Math.Abs).ToArray(), b.Seen.Select(Math.Abs).ToArray(), magnitudes, spec with { Alpha = Math.Abs(spec.Alpha) });
            sums = magnitudes.Select(v => (double)v).ToArray();
        }
        MatMulReference.Run(a, b.Seen, c, spec);
        ActivationPrecisions.Round(c, spec.CStorage);
        var got = Read(gc, (int)cLen, spec.CStorage);
        CloseStored(c, got, spec.CStorage, what, sums, spec.K);
        return got;
    }

    /// <summary>A bf16 activation times an fp32 operand (which alone is copied to fp16), A's rows
    /// along k or (transposed) along m, each with and without the vector fetches.</summary>
    [SkippableTheory]
    [InlineData(false, true, 300, 264, 300, true), InlineData(true, false, 130, 135, 37, false)]
    [InlineData(true, true, 36, 20, 33, true), InlineData(false, false, 33, 7, 129, false)]
    public void Bf16ActivationTimesFp32Operand(bool ta, bool tb, int m, int n, int k, bool padded) =>
        Compare(RowsSpec(ta, tb, m, n, k, padded) with { AStorage = Bf16 }, WeightPrecision.Fp32, MatrixUnitsTiling.Small,
                $"bf16 {(ta ? "Aᵀ" : "A")}·{(tb ? "Bᵀ" : "B")} fp32 {m}x{n}x{k}");

    /// <summary>An fp16 activation through an fp16 weight into an fp16 output, scaled, on edge
    /// and interior tiles of both tilings.</summary>
    [SkippableTheory]
    [InlineData(300, 264, 300, 1f), InlineData(256, 128, 96, 0.5f), InlineData(31, 17, 9, 1f)]
    public void Fp16ActivationIntoFp16Output(int m, int n, int k, float alpha)
    {
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
            Compare(MatMulSpec.Rows(m, n, k, transposeB: true) with { AStorage = Fp16, CStorage = Fp16, Alpha = alpha }, WeightPrecision.Fp16, tiling,
                    $"fp16 A·Wᵀ into fp16 {tiling} {m}x{n}x{k} alpha {alpha}");
    }

    /// <summary>Attention's products of two bf16 activations, per head in batches (strided rows,
    /// heads side by side), the second operand read along k (Kᵀ) or along n (V), and A transposed
    /// (Pᵀ·dO); into fp32 scores and bf16 outputs; d_kv 16 takes the vector fetches, 18 not.</summary>
    [SkippableTheory]
    [InlineData(MatMulTests.Attention.QKt, 16, ActivationPrecision.Fp32), InlineData(MatMulTests.Attention.QKt, 18, ActivationPrecision.Bf16)]
    [InlineData(MatMulTests.Attention.PV, 16, ActivationPrecision.Bf16), InlineData(MatMulTests.Attention.PtV, 16, ActivationPrecision.Fp32)]
    public void Bf16AttentionOperands(MatMulTests.Attention form, int dkv, ActivationPrecision output)
    {
        var spec = form switch
        {
            MatMulTests.Attention.QKt => MatMulSpec.AttentionQKt(2, 3, 33, 40, dkv),
            MatMulTests.Attention.PV => MatMulSpec.AttentionPV(2, 3, 33, 40, dkv),
            _ => MatMulSpec.AttentionPtV(2, 3, 33, 40, dkv),
        };
        Compare(spec with { AStorage = Bf16, BStorage = Bf16, CStorage = output }, WeightPrecision.Fp32, MatrixUnitsTiling.Small,
                $"bf16 {form} d_kv {dkv} into {output.Name()}");
    }

    /// <summary>A bf16 activation through an int8 weight read as A·Bᵀ, into a bf16 output (which the
    /// int8 kernel always stores through shared memory, scaling each column), overwritten or summed onto.</summary>
    [SkippableTheory]
    [InlineData(300, 264, 300, false, false), InlineData(130, 135, 37, true, true)]
    public void Bf16ActivationThroughInt8WeightIntoBf16(int m, int n, int k, bool padded, bool accumulate)
    {
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
            Compare(RowsSpec(false, true, m, n, k, padded) with { AStorage = Bf16, CStorage = Bf16, Accumulate = accumulate }, WeightPrecision.Int8, tiling,
                    $"bf16 A·int8 Wᵀ into bf16 {tiling} {m}x{n}x{k} accumulate {accumulate}");
    }

    /// <summary>A bf16 activation through a bf16 weight (both widened and rounded to fp16 in the
    /// fill), either layout of the weight, into fp32 and bf16.</summary>
    [SkippableTheory]
    [InlineData(true, ActivationPrecision.Fp32), InlineData(false, ActivationPrecision.Bf16), InlineData(true, ActivationPrecision.Bf16)]
    public void Bf16ActivationThroughBf16Weight(bool tb, ActivationPrecision output) =>
        Compare(RowsSpec(false, tb, 200, 136, 100, true) with { AStorage = Bf16, CStorage = output }, WeightPrecision.Bf16, MatrixUnitsTiling.Default,
                $"bf16 A·bf16 {(tb ? "Wᵀ" : "W")} into {output.Name()}");

    /// <summary>Summing onto a bf16 C: C = bf16(C + alpha·A·B) with C widened; whole interior
    /// tiles with aligned rows, which an fp32 C takes straight through the cooperative load and
    /// store, go through shared memory here, with alpha 1 as with others, and edge tiles too.</summary>
    [SkippableTheory]
    [InlineData(256, 128, 96, 1f), InlineData(256, 128, 96, 0.5f), InlineData(200, 136, 100, 1f)]
    public void AccumulatesIntoBf16(int m, int n, int k, float alpha)
    {
        foreach (var tiling in new[] { MatrixUnitsTiling.Small, MatrixUnitsTiling.Default })
            Compare(MatMulSpec.Rows(m, n, k, transposeB: true) with { AStorage = Bf16, CStorage = Bf16, Alpha = alpha, Accumulate = true }, WeightPrecision.Fp16, tiling,
                    $"bf16 += alpha {alpha} {tiling} {m}x{n}x{k}");
    }

    /// <summary>bf16 activations past fp16's range (T5 v1.1's feed-forward has them) are saturated at
    /// ±65504 as the fill rounds them for the fp16 fragments, not turned into infinities; an fp16
    /// output past its range saturates too. Exact values on a product with one term, and a random
    /// product with a few huge activations against the reference.</summary>
    [SkippableFact]
    public void Bf16ActivationsPastTheHalfRangeGiveFiniteOutputs()
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(3, 1, 16, transposeB: true) with { AStorage = Bf16 };
        var a = new float[48];
        a[0] = 1e6f;
        a[16] = -3e5f;
        a[32] = 7e4f;
        var w = new float[16];
        w[0] = 4f;
        foreach (var (output, expected) in new[]
                 {
                     (Fp32, new[] { 262016f, -262016f, 262016f }),
                     (Bf16, new[] { 262144f, -262144f, 262144f }),
                     (Fp16, new[] { 65504f, -65504f, 65504f }),
                 })
        {
            using var ga = Stored(ctx, (float[])a.Clone(), Bf16, "a");
            using var gw = GpuBuffer.From<ushort>(ctx, w.Select(HalfFloat.ToFp16).ToArray());
            using var gc = Stored(ctx, new float[3], output, "c");
            using (var g = new CommandGraph(ctx))
            {
                MatMulKernel.RunOnMatrixUnits(g, ga, gw, gc, spec with { CStorage = output }, Fitting(ctx, MatrixUnitsTiling.Default), WeightPrecision.Fp16);
                g.Run();
            }
            Assert.Equal(expected, Read(gc, 3, output));
        }

        Compare(MatMulSpec.Rows(130, 72, 96, transposeB: true) with { AStorage = Bf16, CStorage = Bf16 }, WeightPrecision.Fp16, MatrixUnitsTiling.Small,
                "bf16 activations past fp16's range", x =>
                {
                    for (int i = 0; i < x.Length; i += 97) x[i] = (i % 2 == 0 ? 1 : -1) * 2e5f;
                });
    }

    // ---- bf16 fragments (VK_KHR_shader_bfloat16; emulated on lavapipe) ----

    /// <summary>bf16 fragments against the reference on operands rounded to bf16, within the
    /// class's bound for them, each kind of operand the fill takes: fp32 ones rounded to bf16
    /// (both operands, as with every product on the units), bf16 activations and weights as
    /// stored, fp16 ones converted, an int8 weight's bytes (exact in bf16); transposed, strided
    /// and edge tiles, alpha, summing onto C, and 16-bit outputs.</summary>
    [SkippableTheory]
    [InlineData("fp32 A·Bᵀ fp32")]
    [InlineData("bf16 A·bf16 Wᵀ into bf16")]
    [InlineData("fp16 A·fp16 Wᵀ into fp16")]
    [InlineData("bf16 A·int8 Wᵀ into bf16, summed onto")]
    [InlineData("bf16 Pᵀ·dO")]
    public void Bf16FragmentsMatchTheBf16RoundedReference(string form)
    {
        var ctx = MatrixUnitsBf16Ctx;
        Assert.Equal(MatrixUnitsOperands.Bf16, ctx.Plan.MatrixUnitsOperands);
        var (spec, weight, tiling) = form switch
        {
            "fp32 A·Bᵀ fp32" => (RowsSpec(false, true, 300, 264, 300, true), WeightPrecision.Fp32, MatrixUnitsTiling.Small),
            "bf16 A·bf16 Wᵀ into bf16" => (RowsSpec(false, true, 200, 136, 100, true) with { AStorage = Bf16, CStorage = Bf16 }, WeightPrecision.Bf16, MatrixUnitsTiling.Default),
            "fp16 A·fp16 Wᵀ into fp16" => (MatMulSpec.Rows(31, 17, 9, transposeB: true) with { AStorage = Fp16, CStorage = Fp16, Alpha = 0.5f }, WeightPrecision.Fp16, MatrixUnitsTiling.Small),
            "bf16 A·int8 Wᵀ into bf16, summed onto" => (RowsSpec(false, true, 130, 135, 37, true) with { AStorage = Bf16, CStorage = Bf16, Accumulate = true }, WeightPrecision.Int8,
                                                       MatrixUnitsTiling.Small),
            _ => (MatMulSpec.AttentionPtV(2, 3, 33, 40, 16) with { AStorage = Bf16, BStorage = Bf16 }, WeightPrecision.Fp32, MatrixUnitsTiling.Small),
        };
        Compare(spec, weight, tiling, $"bf16 fragments: {form}", on: ctx);
    }

    /// <summary>Against the product of the unrounded fp32 operands, bf16 fragments err by at most
    /// what rounding both operands to bf16 (u = 2^-8) can: |â·b̂ - a·b| ≤ (2u + u²)|a·b| a term,
    /// so (2u + u²)·Σ|a·b| an element, plus the fp32 sums' (3K + 8)·2^-24 of it. The check that
    /// they are bf16 and not fp16 is the tighter one against the rounded reference above.</summary>
    [SkippableFact]
    public void Bf16FragmentsErrWithinTheirUnitRoundoff()
    {
        var ctx = MatrixUnitsBf16Ctx;
        var spec = RowsSpec(false, true, 300, 264, 300, true);
        var got = Compare(spec, WeightPrecision.Fp32, MatrixUnitsTiling.Small, "fp32 A·Bᵀ on bf16 fragments", on: ctx);
        // The operands as Compare drew them, unrounded (fp32 storage keeps them as they are).
        var (aLen, bLen, cLen) = spec.Extents();
        var a = Check.Random((int)aLen, 21);
        var b = Check.Random((int)bLen, 22);
        // C's padding between rows keeps what it held.
        var exact = Check.Random((int)cLen, 23);
        var sums = new float[cLen];
        MatMulReference.Run(a, b, exact, spec);
        MatMulReference.Run(a.Select(Math.Abs).ToArray(), b.Select(Math.Abs).ToArray(), sums, spec);
        double u = Math.Pow(2, -8);
        double worst = 0;
        for (int i = 0; i < got.Length; i++)
        {
            double bound = (2 * u + u * u + (3.0 * spec.K + 8) * Math.Pow(2, -24)) * sums[i];
            Assert.True(Math.Abs(got[i] - exact[i]) <= bound, $"element {i}: {got[i]:R} vs the unrounded operands' {exact[i]:R}, beyond {bound:E2}");
            if (sums[i] > 0) worst = Math.Max(worst, Math.Abs(got[i] - exact[i]) / sums[i]);
        }
        // The rounding shows: fp32 sums alone would stay within 3K·2^-24 (5e-5) of Σ|a·b|.
        Assert.True(worst > 1e-4, $"bf16 fragments err by at most {worst:E2} of Σ|a·b|: were the operands rounded at all?");
    }

    /// <summary>bf16 activations past fp16's range enter bf16 fragments as stored: a product of one
    /// term comes out exact (4·a), where fp16 fragments saturate a at 65504 (4·65504 = 262016,
    /// Bf16ActivationsPastTheHalfRangeGiveFiniteOutputs); and a random product with a few huge
    /// activations meets the rounded reference, while the fp16 fragments' output for the same
    /// operands lies far from it.</summary>
    [SkippableFact]
    public void Bf16FragmentsKeepActivationsPastTheHalfRange()
    {
        var ctx = MatrixUnitsBf16Ctx;
        var spec = MatMulSpec.Rows(3, 1, 16, transposeB: true) with { AStorage = Bf16 };
        var a = new float[48];
        a[0] = 1e6f;
        a[16] = -3e5f;
        a[32] = 7e4f;
        var w = new float[16];
        w[0] = 4f;
        using var ga = Stored(ctx, a, Bf16, "a");
        using var gw = GpuBuffer.From<ushort>(ctx, w.Select(HalfFloat.ToFp16).ToArray());
        using var gc = Stored(ctx, new float[3], Fp32, "c");
        using (var g = new CommandGraph(ctx))
        {
            MatMulKernel.RunOnMatrixUnits(g, ga, gw, gc, spec, Fitting(ctx, MatrixUnitsTiling.Default), WeightPrecision.Fp16);
            g.Run();
        }
        // a as stored in bf16 (1e6 is 999424 there), times 4: exact in fp32.
        Assert.Equal(new[] { 4 * a[0], 4 * a[16], 4 * a[32] }, Read(gc, 3, Fp32));
        Assert.Equal(3997696f, 4 * a[0]);

        var huge = MatMulSpec.Rows(130, 72, 96, transposeB: true) with { AStorage = Bf16, CStorage = Bf16 };
        static void Loud(float[] x)
        {
            for (int i = 0; i < x.Length; i += 97) x[i] = (i % 2 == 0 ? 1 : -1) * 2e5f;
        }
        var bf16 = Compare(huge, WeightPrecision.Fp16, MatrixUnitsTiling.Small, "bf16 fragments, activations past fp16's range", Loud, ctx);
        var fp16Ctx = MatrixUnitsCtx;
        Skip.If(fp16Ctx.Plan.Bf16Fragments, "no context with fp16 fragments to compare with");
        var fp16 = Compare(huge, WeightPrecision.Fp16, MatrixUnitsTiling.Small, "fp16 fragments, activations past fp16's range", Loud, fp16Ctx);
        double largest = bf16.Max(v => Math.Abs((double)v));
        double apart = bf16.Zip(fp16, (x, y) => Math.Abs((double)x - y)).Max();
        Assert.True(apart > 0.1 * largest, $"fp16 fragments came within {apart:E2} of bf16's (largest output {largest:E2}): nothing saturated, so this tests nothing");
    }

    /// <summary>The plan never asks for a copy of an operand kept in 16 bits, on products wide and
    /// deep enough that it copies the fp32 ones.</summary>
    [Fact]
    public void The16BitOperandsAreNeverCopied()
    {
        var plan = new DevicePlan(Ctx.Capabilities, new GpuOptions { MatrixUnitsHalfActivations = true }, khrBuilt: false, nv2Built: false);
        var wide = MatMulSpec.Rows(19584, 768, 768, transposeB: true);
        var attention = MatMulSpec.AttentionPV(32, 12, 612, 612, 64);
        Assert.True(plan.HalvesA(wide));
        Assert.True(plan.HalvesB(attention));
        foreach (var sixteen in new[] { Bf16, Fp16 })
        {
            Assert.False(plan.HalvesA(wide with { AStorage = sixteen }));
            Assert.False(plan.HalvesB(attention with { BStorage = sixteen }));
        }
    }

    /// <summary>The spec's storages must be the buffers' own, and a B kept in 16 bits as an
    /// activation is no weight table.</summary>
    [SkippableFact]
    public void StoragesMustMatchTheBuffers()
    {
        var ctx = MatrixUnitsCtx;
        var spec = MatMulSpec.Rows(16, 16, 16, transposeB: true);
        using var fp32 = new GpuBuffer(ctx, 16 * 16 * 4, "fp32");
        using var bf16 = GpuBuffer.Activations(ctx, 16 * 16, Bf16, "bf16");
        using var g = new CommandGraph(ctx);
        var tiling = Fitting(ctx, MatrixUnitsTiling.Small);
        var e = Assert.Throws<ArgumentException>(() => MatMulKernel.RunOnMatrixUnits(g, fp32, fp32, fp32, spec with { AStorage = Bf16 }, tiling, WeightPrecision.Fp32));
        Assert.Contains("operand A", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => MatMulKernel.RunOnMatrixUnits(g, fp32, fp32, bf16, spec, tiling, WeightPrecision.Fp32));
        Assert.Contains("operand C", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => MatMulKernel.RunOnMatrixUnits(g, fp32, bf16, fp32, spec with { BStorage = Bf16 }, tiling, WeightPrecision.Fp16));
        Assert.Contains("weight", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, g.DispatchCount);
    }
}
