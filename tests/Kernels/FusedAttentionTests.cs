using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Kernels;

/// <summary>Which variant of the fused attention shaders a test runs: lavapipe's (8 invocations
/// reading blocks of 16 rows straight from memory) or a GPU's (64 invocations staging blocks in
/// shared memory; of 16 rows here, where a GPU's plan takes 32: <see cref="FusedAttentionTests.Cases"/>
/// says why) whatever the device would pick, the one the device picks (<see cref="Device"/>), or
/// the kernels on the matrix units (or their emulation, on lavapipe) that a context with every
/// product on them picks.</summary>
public enum FusedTiles { Cpu, Gpu, Device, MatrixUnits }

[Collection(GpuCollections.Kernels)]
public sealed class FusedAttentionTests(GpuFixture f) : GpuTest(f)
{
    const int NumBuckets = 32;
    const float Rate = 0.1f;
    const uint Seed = 1234, Stream = 7;

    /// <summary>The portable kernels' tiling a variant forces: lavapipe's, or staging as a GPU's
    /// plan does with its 64 invocations, in blocks of 16 rather than its 32 (<see cref="Cases"/>
    /// says why); null where the kernels choose (the device's own, the matrix units').</summary>
    static FusedAttentionTiling? Tiling(FusedTiles t) => t switch
    {
        FusedTiles.Cpu => FusedAttentionTiling.Cpu,
        FusedTiles.Gpu => new(64, 16, Staged: true),
        _ => null,
    };

    /// <summary>The context a variant runs on; for the matrix units, one that does choose them for
    /// d_kv <paramref name="dkv"/>, so that these tests cannot pass on the portable kernels:
    /// <paramref name="on"/> where given, else the fixture's.</summary>
    GpuContext ContextFor(FusedTiles t, int dkv, GpuContext? on = null)
    {
        if (t != FusedTiles.MatrixUnits) return Ctx;
        var ctx = on ?? MatrixUnitsAllProductsCtx;
        Assert.NotNull(FusedAttentionKernel.MatrixUnitsTiling(ctx, dkv, backward: false));
        Assert.NotNull(FusedAttentionKernel.MatrixUnitsTiling(ctx, dkv, backward: true));
        return ctx;
    }

    /// <summary>The matrix units round q, k, v and dO to fp16 as they enter a product; the
    /// reference given the same rounded inputs then measures what the kernels add, the rounding
    /// of the probabilities and dS, against a bound that means something.</summary>
    static Inputs AsMultiplied(Inputs x, FusedTiles t) => t != FusedTiles.MatrixUnits ? x
        : x with { Q = Half16(x.Q), K = Half16(x.K), V = Half16(x.V), DO = Half16(x.DO) };

    static float[] Half16(float[] a) => a.Select(value => (float)(Half)value).ToArray();

    /// <summary>Activations, bucket table (a random bucket per diagonal, so a wrong index reads
    /// another), bias weights and a key mask with about a quarter of the
    /// keys off. Rows past the attended lengths (a KV cache's spare rows) hold NaN, so a read of
    /// one shows in the result.</summary>
    sealed record Inputs(float[] Q, float[] K, float[] V, float[] DO, int[] Buckets, float[] BiasWeight, int[] KeyMask)
    {
        public static Inputs Random(FusedAttentionShape s, int seed)
        {
            var rng = new Random(seed);
            var a = s.Scores;
            return new Inputs(
                Activation(s, s.QueryRows, a.QueryLength, seed),
                Activation(s, s.KeyRows, a.KeyLength, seed + 1),
                Activation(s, s.KeyRows, a.KeyLength, seed + 2),
                Activation(s, s.QueryRows, a.QueryLength, seed + 3),
                Enumerable.Range(0, a.Diagonals).Select(_ => rng.Next(NumBuckets)).ToArray(),
                Check.Random(NumBuckets * a.Heads, seed + 4, 2f),
                Enumerable.Range(0, a.Batch * a.KeyLength).Select(_ => rng.Next(4) == 0 ? 0 : 1).ToArray());
        }

        /// <summary>q, k and v as buffers of <paramref name="s"/> hold them (dO stays fp32, as
        /// every gradient does).</summary>
        public Inputs Stored(Storages s) => this with { Q = Rounded(Q, s.Q), K = Rounded(K, s.K), V = Rounded(V, s.V) };

        static float[] Activation(FusedAttentionShape s, int rows, int length, int seed)
        {
            int row = s.Scores.Heads * s.DKv;
            var x = Check.Random(s.Scores.Batch * rows * row, seed);
            for (int i = 0; i < x.Length; i++)
                if (i / row % rows >= length) x[i] = float.NaN;
            return x;
        }
    }

    /// <summary>Which optional parts of the attention a case switches on.</summary>
    readonly record struct Parts(bool Bias, bool Mask, bool Dropout)
    {
        public int[] Buckets(Inputs x) => Bias ? x.Buckets : [];
        public float[] BiasWeight(Inputs x) => Bias ? x.BiasWeight : [];
        public int[] KeyMask(Inputs x) => Mask ? x.KeyMask : [];
        public float DropoutRate => Dropout ? Rate : 0f;
    }

    static GpuBuffer? Optional<T>(GpuContext ctx, T[] data) where T : unmanaged => data.Length == 0 ? null : GpuBuffer.From<T>(ctx, data);

    /// <summary>How q, k, v and o are stored; one precision stands for all four.</summary>
    readonly record struct Storages(ActivationPrecision Q, ActivationPrecision K, ActivationPrecision V, ActivationPrecision O)
    {
        public static implicit operator Storages(ActivationPrecision p) => new(p, p, p, p);
    }

    static float[] Rounded(float[] values, ActivationPrecision storage)
    {
        var r = (float[])values.Clone();
        ActivationPrecisions.Round(r, storage);
        return r;
    }

    /// <summary>An activation buffer of <paramref name="storage"/> holding <paramref name="values"/>
    /// as a kernel storing them would (<see cref="ActivationPrecisions.Round"/>).</summary>
    static GpuBuffer Stored(GpuContext ctx, float[] values, ActivationPrecision storage)
    {
        if (storage == ActivationPrecision.Fp32) return GpuBuffer.From<float>(ctx, values);
        var b = GpuBuffer.Activations(ctx, values.Length, storage);
        var bits = new ushort[b.StoredElements];
        var r = Rounded(values, storage);
        for (int i = 0; i < r.Length; i++) bits[i] = storage == ActivationPrecision.Bf16 ? HalfFloat.ToBf16(r[i]) : HalfFloat.ToFp16(r[i]);
        b.Upload<ushort>(bits);
        return b;
    }

    /// <summary>The first <paramref name="n"/> activations of <paramref name="b"/>, widened.</summary>
    static float[] Load(GpuBuffer b, long n)
    {
        if (b.Storage == ActivationPrecision.Fp32) return b.Download<float>()[..(int)n];
        var bits = b.Download<ushort>();
        return Enumerable.Range(0, (int)n).Select(i => b.Storage == ActivationPrecision.Bf16 ? HalfFloat.FromBf16(bits[i]) : HalfFloat.FromFp16(bits[i])).ToArray();
    }

    /// <summary>o and the logsumexp; <paramref name="units"/> forces a tiling of the kernels on the
    /// matrix units, <paramref name="on"/> their context; q, k, v and o are stored as
    /// <paramref name="storages"/> says (fp32 when absent).</summary>
    (float[] O, float[] Lse) Forward(FusedAttentionShape shape, Inputs x, Parts parts, FusedTiles tiles, FusedAttentionMatrixUnitsTiling? units = null,
                                     Storages? storages = null, GpuContext? on = null)
    {
        var ctx = ContextFor(tiles, shape.DKv, on);
        var s = storages ?? ActivationPrecision.Fp32;
        using var q = Stored(ctx, x.Q, s.Q);
        using var k = Stored(ctx, x.K, s.K);
        using var v = Stored(ctx, x.V, s.V);
        using var o = Stored(ctx, new float[shape.QueryElements], s.O);
        using var lse = new GpuBuffer(ctx, Math.Max(1, shape.Scores.Rows) * 4);
        using var buckets = Optional(ctx, parts.Buckets(x));
        using var bias = Optional(ctx, parts.BiasWeight(x));
        using var mask = Optional(ctx, parts.KeyMask(x));
        using var seed = GpuBuffer.From<uint>(ctx, [Seed]);
        using (var g = new CommandGraph(ctx))
        {
            if (Tiling(tiles) is { } t) FusedAttentionKernel.Forward(g, q, k, v, o, lse, buckets, bias, mask, shape, parts.DropoutRate, seed, Stream, t);
            else if (units is { } u) FusedAttentionKernel.ForwardOnMatrixUnits(g, q, k, v, o, lse, buckets, bias, mask, shape, parts.DropoutRate, seed, Stream, u);
            else FusedAttentionKernel.Forward(g, q, k, v, o, lse, buckets, bias, mask, shape, parts.DropoutRate, seed, Stream);
            g.Run();
        }
        return (Load(o, shape.QueryElements), lse.Download<float>());
    }

    (float[] O, float[] Lse) ReferenceForward(FusedAttentionShape shape, Inputs x, Parts parts)
    {
        var o = new float[shape.QueryElements];
        var lse = new float[shape.Scores.Rows];
        FusedAttentionReference.Forward<float>(x.Q, x.K, x.V, o, lse, parts.Buckets(x), parts.BiasWeight(x), parts.KeyMask(x), shape, parts.DropoutRate, Seed, Stream);
        return (o, lse);
    }

    /// <summary>dq, dk, dv; the gradient buffers start out holding <paramref name="initial"/>;
    /// <paramref name="units"/> forces a tiling of the kernels on the matrix units, <paramref name="on"/>
    /// their context; q, k, v and o are stored as <paramref name="storages"/> says (fp32 when absent).</summary>
    (float[] Dq, float[] Dk, float[] Dv) Backward(FusedAttentionShape shape, Inputs x, float[] o, float[] lse, Parts parts, FusedTiles tiles, float initial = 0f,
                                                  FusedAttentionMatrixUnitsTiling? units = null, Storages? storages = null, GpuContext? on = null)
    {
        var ctx = ContextFor(tiles, shape.DKv, on);
        var s = storages ?? ActivationPrecision.Fp32;
        using var q = Stored(ctx, x.Q, s.Q);
        using var k = Stored(ctx, x.K, s.K);
        using var v = Stored(ctx, x.V, s.V);
        using var go = Stored(ctx, o, s.O);
        using var glse = GpuBuffer.From<float>(ctx, lse);
        using var dO = GpuBuffer.From<float>(ctx, x.DO);
        using var dq = GpuBuffer.From<float>(ctx, Filled(shape.QueryElements, initial));
        using var dk = GpuBuffer.From<float>(ctx, Filled(shape.KeyElements, initial));
        using var dv = GpuBuffer.From<float>(ctx, Filled(shape.KeyElements, initial));
        using var buckets = Optional(ctx, parts.Buckets(x));
        using var bias = Optional(ctx, parts.BiasWeight(x));
        using var mask = Optional(ctx, parts.KeyMask(x));
        using var seed = GpuBuffer.From<uint>(ctx, [Seed]);
        using (var g = new CommandGraph(ctx))
        {
            if (Tiling(tiles) is { } t) FusedAttentionKernel.Backward(g, q, k, v, go, glse, dO, dq, dk, dv, buckets, bias, mask, shape, parts.DropoutRate, seed, Stream, t);
            else if (units is { } u) FusedAttentionKernel.BackwardOnMatrixUnits(g, q, k, v, go, glse, dO, dq, dk, dv, buckets, bias, mask, shape, parts.DropoutRate, seed, Stream, u);
            else FusedAttentionKernel.Backward(g, q, k, v, go, glse, dO, dq, dk, dv, buckets, bias, mask, shape, parts.DropoutRate, seed, Stream);
            g.Run();
        }
        return (dq.Download<float>(), dk.Download<float>(), dv.Download<float>());
    }

    static (float[] Dq, float[] Dk, float[] Dv) ReferenceBackward(FusedAttentionShape shape, Inputs x, float[] o, float[] lse, Parts parts, float initial = 0f)
    {
        var dq = Filled(shape.QueryElements, initial);
        var dk = Filled(shape.KeyElements, initial);
        var dv = Filled(shape.KeyElements, initial);
        FusedAttentionReference.Backward<float>(x.Q, x.K, x.V, o, lse, x.DO, dq, dk, dv, parts.Buckets(x), parts.BiasWeight(x), parts.KeyMask(x), shape, parts.DropoutRate, Seed, Stream);
        return (dq, dk, dv);
    }

    static float[] Filled(long n, float value)
    {
        var a = new float[n];
        Array.Fill(a, value);
        return a;
    }

    /// <summary>Every awkward length as Lq and as Lk, d_kv 1, 5, 8 and 64, each optional part on
    /// somewhere and off somewhere, in both tile shapes; the staged one at d_kv 32 where the
    /// others have 64, and in blocks of 16 rows where a GPU's plan stages 32 (<see cref="Tiling"/>).
    /// Both are for lavapipe's compile times: a kernel with barriers becomes an LLVM coroutine
    /// there, whose frame LLVM builds in time far beyond linear in the unrolled block of scores
    /// (measured on a 2-core CI-like machine, cold cache, the staged forward: 45 s at blocks of 32
    /// and d_kv 32, 7 s at blocks of 16, 48 s at 16 and d_kv 64; earlier 4 m 47 s at 32 and 64).
    /// The staging loop, its barriers and the block loop are the same code at any of these sizes;
    /// MatchesUnfusedPath runs each device's own tiling at d_kv 64, a GPU's blocks of 32 on a GPU.</summary>
    public static TheoryData<int, int, int, int, int, bool, bool, bool, bool, FusedTiles> Cases()
    {
        (int B, int H, int Lq, int Lk, int D, bool Bias, bool Mask, bool Causal, bool Dropout)[] cases =
        [
            (1, 1, 1, 1, 8, true, true, true, true),
            (2, 3, 7, 33, 8, false, false, false, false),
            (2, 3, 7, 33, 8, true, true, false, true),
            (2, 2, 33, 7, 5, false, true, true, false),
            (1, 2, 33, 129, 64, true, true, true, true),
            (1, 1, 129, 300, 64, true, false, false, false),
            (2, 1, 300, 7, 1, true, true, true, true),
            (1, 1, 300, 129, 64, false, true, true, true),
        ];
        var data = new TheoryData<int, int, int, int, int, bool, bool, bool, bool, FusedTiles>();
        foreach (var tiles in new[] { FusedTiles.Cpu, FusedTiles.Gpu })
            foreach (var c in cases)
                data.Add(c.B, c.H, c.Lq, c.Lk, tiles == FusedTiles.Gpu ? Math.Min(c.D, 32) : c.D, c.Bias, c.Mask, c.Causal, c.Dropout, tiles);
        return data;
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void ForwardMatchesReference(int batch, int heads, int lq, int lk, int dkv, bool bias, bool mask, bool causal, bool dropout, FusedTiles tiles)
    {
        var shape = new FusedAttentionShape(new AttentionShape(batch, heads, lq, lk, causal), dkv);
        var x = Inputs.Random(shape, batch * 1000 + lk);
        var parts = new Parts(bias, mask, dropout);
        var (o, lse) = Forward(shape, x, parts, tiles);
        var (refO, refLse) = ReferenceForward(shape, x, parts);
        // Outputs are convex combinations of v (times 1/(1 - rate)) and the logsumexp is a few
        // units; fp32 exp, its sum over at most 300 keys and a d_kv ≤ 64 dot product per score
        // each contribute ~1e-7 relative, two orders inside the bound.
        Check.Close(refO, o, 1e-5, $"fused attention o {shape} {parts}");
        Check.Close(refLse, lse, 1e-5, $"fused attention logsumexp {shape} {parts}");
    }

    [SkippableTheory, MemberData(nameof(Cases))]
    public void BackwardMatchesReference(int batch, int heads, int lq, int lk, int dkv, bool bias, bool mask, bool causal, bool dropout, FusedTiles tiles)
    {
        var shape = new FusedAttentionShape(new AttentionShape(batch, heads, lq, lk, causal), dkv);
        var x = Inputs.Random(shape, batch * 1000 + lk + 1);
        var parts = new Parts(bias, mask, dropout);
        // The same o and logsumexp go into both, so only the backward's own error is measured.
        var (o, lse) = ReferenceForward(shape, x, parts);
        var (dq, dk, dv) = Backward(shape, x, o, lse, parts, tiles);
        var expected = ReferenceBackward(shape, x, o, lse, parts);
        Check.Close(expected.Dv, dv, 1e-5, $"dv {shape} {parts}");
        if (lk == 1)
        {
            // Softmax over one key is constant: dq and dk vanish, up to the rounding of dP - Δ,
            // a few ulp of |dO·v| ≤ d_kv = 8, times |k|, |q| ≤ 1. A relative measure would divide
            // by the reference's own rounding noise.
            Assert.All(dq.Concat(dk), g => Assert.True(Math.Abs(g) <= 1e-5, $"{g} should vanish with a single key"));
            return;
        }
        // dS = P·(dP - Δ) subtracts numbers of similar size, so a score's error reaches dS
        // relative to |dP| rather than to |dS|; summed over ≤ 300 keys or queries that stays
        // near 1e-6 of the largest gradient.
        Check.Close(expected.Dq, dq, 1e-5, $"dq {shape} {parts}");
        Check.Close(expected.Dk, dk, 1e-5, $"dk {shape} {parts}");
    }

    /// <summary>The error bound of a variant against the reference given <see cref="AsMultiplied"/>
    /// inputs: fp32 sums in another order (~1e-7 of the largest value, 1e-5 leaves room for dS's
    /// cancellation), and on the matrix units the fp16 rounding of each probability and dS (2.4e-4
    /// of it at most) before they are multiplied: measured on lavapipe's emulation, 1.0-1.6e-4 of
    /// the largest o, 1.7-2.2e-4 of dv, 1.9-3.6e-4 of dq.</summary>
    static double Tolerance(FusedTiles t) => t == FusedTiles.MatrixUnits ? 1e-3 : 1e-5;

    /// <summary>Cases for the kernels on the matrix units: d_kv 16, 32 and 64 (their multiples of
    /// 16), lengths that end inside a block of 16 and of 64, every optional part on somewhere and
    /// off somewhere.</summary>
    public static TheoryData<int, int, int, int, int, bool, bool, bool, bool> MatrixUnitCases() => new()
    {
        { 1, 1, 1, 1, 16, true, true, true, true },
        { 2, 3, 7, 33, 16, false, false, false, false },
        { 2, 2, 33, 7, 32, false, true, true, false },
        { 1, 2, 33, 129, 64, true, true, true, true },
        { 1, 1, 129, 70, 64, true, false, false, true },
    };

    [SkippableTheory, MemberData(nameof(MatrixUnitCases))]
    public void OnMatrixUnitsMatchesReference(int batch, int heads, int lq, int lk, int dkv, bool bias, bool mask, bool causal, bool dropout)
    {
        var shape = new FusedAttentionShape(new AttentionShape(batch, heads, lq, lk, causal), dkv);
        var x = AsMultiplied(Inputs.Random(shape, batch * 100 + lq + lk), FusedTiles.MatrixUnits);
        var parts = new Parts(bias, mask, dropout);
        var (o, lse) = Forward(shape, x, parts, FusedTiles.MatrixUnits);
        var (refO, refLse) = ReferenceForward(shape, x, parts);
        double tolerance = Tolerance(FusedTiles.MatrixUnits);
        Check.Close(refO, o, tolerance, $"o on the matrix units {shape} {parts}");
        // The scores are exact products of the rounded inputs summed in fp32.
        Check.Close(refLse, lse, 1e-5, $"logsumexp on the matrix units {shape} {parts}");
        var (dq, dk, dv) = Backward(shape, x, refO, refLse, parts, FusedTiles.MatrixUnits);
        var expected = ReferenceBackward(shape, x, refO, refLse, parts);
        Check.Close(expected.Dv, dv, tolerance, $"dv on the matrix units {shape} {parts}");
        if (lk == 1)
        {
            // As in BackwardMatchesReference: a softmax over one key is constant.
            Assert.All(dq.Concat(dk), g => Assert.True(Math.Abs(g) <= 1e-5, $"{g} should vanish with a single key"));
            return;
        }
        Check.Close(expected.Dq, dq, tolerance, $"dq on the matrix units {shape} {parts}");
        Check.Close(expected.Dk, dk, tolerance, $"dk on the matrix units {shape} {parts}");
    }

    /// <summary>Every tiling <see cref="FusedAttentionMatrixUnitsTiling.For"/> may choose, forced, at
    /// each d_kv where the device's shared memory holds it: lavapipe's 32 KiB gives the defaults
    /// only blocks of 16 at d_kv 64, while a GPU's 48 KiB takes 64 forward and 32 backward, whose
    /// tile strides and block loops differ; at d_kv 16 and 32 they run here too.</summary>
    [SkippableTheory]
    [InlineData(4, 64)]
    [InlineData(4, 32)]
    [InlineData(4, 16)]
    [InlineData(2, 16)]
    public void OnMatrixUnitsEveryTilingMatchesReference(int warps, int block)
    {
        var tiling = new FusedAttentionMatrixUnitsTiling(warps, block);
        Assert.Contains(tiling, FusedAttentionMatrixUnitsTiling.Candidates);
        var ctx = ContextFor(FusedTiles.MatrixUnits, 16);
        int subgroup = (int)ctx.Plan.FusedAttentionSubgroupSize;
        long limit = ctx.Capabilities.MaxComputeSharedMemorySize;
        int ran = 0;
        foreach (int dkv in new[] { 16, 32, 64 })
        {
            var shape = new FusedAttentionShape(new AttentionShape(1, 2, 70, 129, Causal: true), dkv);
            var x = AsMultiplied(Inputs.Random(shape, 91 + dkv), FusedTiles.MatrixUnits);
            var parts = new Parts(Bias: true, Mask: true, Dropout: true);
            var (refO, refLse) = ReferenceForward(shape, x, parts);
            double tolerance = Tolerance(FusedTiles.MatrixUnits);
            if (tiling.SharedBytes(backward: false, dkv, subgroup) <= limit)
            {
                var (o, lse) = Forward(shape, x, parts, FusedTiles.MatrixUnits, tiling);
                Check.Close(refO, o, tolerance, $"o, {tiling} at d_kv {dkv}");
                Check.Close(refLse, lse, 1e-5, $"logsumexp, {tiling} at d_kv {dkv}");
                ran++;
            }
            if (tiling.SharedBytes(backward: true, dkv, subgroup) <= limit)
            {
                var (dq, dk, dv) = Backward(shape, x, refO, refLse, parts, FusedTiles.MatrixUnits, units: tiling);
                var expected = ReferenceBackward(shape, x, refO, refLse, parts);
                Check.Close(expected.Dq, dq, tolerance, $"dq, {tiling} at d_kv {dkv}");
                Check.Close(expected.Dk, dk, tolerance, $"dk, {tiling} at d_kv {dkv}");
                Check.Close(expected.Dv, dv, tolerance, $"dv, {tiling} at d_kv {dkv}");
                ran++;
            }
        }
        // Every tiling fits at least one of the kernels at d_kv 16 in 32 KiB.
        Assert.True(ran > 0, $"{tiling} ran nowhere: {limit} bytes of shared memory");
    }

    /// <summary>The kernels at every subgroup width they take, on the emulated units
    /// (<see cref="GpuOptions.EmulatedAttentionSubgroupSize"/>): at 8 each invocation owns two
    /// whole rows (Intel's Xe-HPG units, lavapipe 26.1's), at 16 one, at 64 a quarter of one (the
    /// fixture's emulation runs 32, half of one). Blocks of 16 at d_kv 16, lengths that end inside
    /// a block, every optional part on: each pipeline here compiles for tens of seconds on
    /// lavapipe, the longer the more scores an invocation holds (unrolled), so the tilings and
    /// d_kv of each width are left to <see cref="OnMatrixUnitsEveryTilingMatchesReference"/> at 32
    /// and to the units of lavapipe 26.1 at 8 (tests/matrix-units-on-lavapipe.filter).</summary>
    [SkippableTheory]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(64)]
    public void OnEmulatedUnitsOfEveryWidthMatchesReference(int subgroup)
    {
        var caps = Ctx.Capabilities;
        Skip.IfNot(caps.ShaderFloat16 && caps.StorageBuffer16Bit, $"{caps.Name} lacks the fp16 arithmetic and 16-bit storage the emulated units need");
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with
        {
            Validation = true, PipelineCacheDirectory = null, MatrixUnits = MatrixUnitsRequest.Emulate, MatrixUnitsAllProducts = true,
            MatrixUnitsOperands = MatrixUnitsOperandsRequest.Fp16, EmulatedAttentionSubgroupSize = (uint)subgroup,
        });
        Assert.Equal((uint)subgroup, ctx.Plan.FusedAttentionSubgroupSize);
        var tiling = new FusedAttentionMatrixUnitsTiling(2, 16);
        var shape = new FusedAttentionShape(new AttentionShape(2, 2, 70, 37, Causal: true), 16);
        var x = AsMultiplied(Inputs.Random(shape, 33), FusedTiles.MatrixUnits);
        var parts = new Parts(Bias: true, Mask: true, Dropout: true);
        double tolerance = Tolerance(FusedTiles.MatrixUnits);
        string what = $"subgroups of {subgroup}";
        var (refO, refLse) = ReferenceForward(shape, x, parts);
        var (o, lse) = Forward(shape, x, parts, FusedTiles.MatrixUnits, tiling, on: ctx);
        Check.Close(refO, o, tolerance, $"o, {what}");
        Check.Close(refLse, lse, 1e-5, $"logsumexp, {what}");
        var (dq, dk, dv) = Backward(shape, x, refO, refLse, parts, FusedTiles.MatrixUnits, units: tiling, on: ctx);
        var expected = ReferenceBackward(shape, x, refO, refLse, parts);
        Check.Close(expected.Dq, dq, tolerance, $"dq, {what}");
        Check.Close(expected.Dk, dk, tolerance, $"dk, {what}");
        Check.Close(expected.Dv, dv, tolerance, $"dv, {what}");
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
    }

    /// <summary>VKPROMPT_MATRIX_UNITS_FUSED_TILING (<see cref="GpuOptions.MatrixUnitsFusedAttentionTiling"/>) forces
    /// the forward's and the backward's tilings, one for both or one each, and refuses what is
    /// malformed or cannot run, naming the option.</summary>
    [SkippableFact]
    public void OnMatrixUnitsTilingCanBeForced()
    {
        var units = ContextFor(FusedTiles.MatrixUnits, 16);
        GpuContext Forcing(string text) => GpuContext.Create(EnvironmentSettings.GpuOptions() with
        {
            Validation = true, PipelineCacheDirectory = null, MatrixUnitsAllProducts = true,
            MatrixUnits = units.MatrixUnitsEmulated ? MatrixUnitsRequest.Emulate : EnvironmentSettings.GpuOptions().MatrixUnits, MatrixUnitsFusedAttentionTiling = text,
        });
        using (var both = Forcing("2x16"))
        {
            Assert.Equal(new FusedAttentionMatrixUnitsTiling(2, 16), FusedAttentionKernel.MatrixUnitsTiling(both, 16, backward: false));
            Assert.Equal(new FusedAttentionMatrixUnitsTiling(2, 16), FusedAttentionKernel.MatrixUnitsTiling(both, 16, backward: true));
        }
        using (var each = Forcing("2x16,2x32"))
        {
            Assert.Equal(new FusedAttentionMatrixUnitsTiling(2, 16), FusedAttentionKernel.MatrixUnitsTiling(each, 16, backward: false));
            Assert.Equal(new FusedAttentionMatrixUnitsTiling(2, 32), FusedAttentionKernel.MatrixUnitsTiling(each, 16, backward: true));
            // A d_kv the kernels cannot take still runs the portable ones.
            Assert.Null(FusedAttentionKernel.MatrixUnitsTiling(each, 8, backward: false));
        }
        // Malformed; a block not a multiple of 16; three kernels; more shared memory than any device has.
        foreach (var text in new[] { "4x", "4x64x2", "4x20", "4x64,4x32,4x16", "16x64" })
        {
            using var bad = Forcing(text);
            var e = Assert.Throws<GpuException>(() => FusedAttentionKernel.MatrixUnitsTiling(bad, 64, backward: false));
            Assert.Contains("GpuOptions.MatrixUnitsFusedAttentionTiling=" + text, e.Message);
        }
    }

    /// <summary>The fused kernels against the unfused path T5Pass otherwise takes: Q·Kᵀ by
    /// matmul, attention_softmax, dropout on a copy, P·V, and its backward through
    /// softmax_backward, on the same device.</summary>
    [SkippableTheory]
    [InlineData(2, 3, 33, 129, 64, true, true, false, true)]
    [InlineData(2, 2, 129, 129, 8, true, false, true, true)]
    [InlineData(1, 2, 7, 300, 64, false, true, false, false)]
    public void MatchesUnfusedPath(int batch, int heads, int lq, int lk, int dkv, bool bias, bool mask, bool causal, bool dropout)
    {
        var shape = new FusedAttentionShape(new AttentionShape(batch, heads, lq, lk, causal), dkv);
        var x = Inputs.Random(shape, 31 + lq);
        var parts = new Parts(bias, mask, dropout);
        var (o, lse) = Forward(shape, x, parts, FusedTiles.Device);
        var (dq, dk, dv) = Backward(shape, x, o, lse, parts, FusedTiles.Device);
        var unfused = Unfused(shape, x, parts);
        // Two fp32 computations of the same sums in different orders: ~1e-7 of the largest
        // value each, compounded through dS's cancellation as above.
        Check.Close(unfused.O, o, 1e-5, "o, fused vs unfused");
        Check.Close(unfused.Dq, dq, 1e-5, "dq, fused vs unfused");
        Check.Close(unfused.Dk, dk, 1e-5, "dk, fused vs unfused");
        Check.Close(unfused.Dv, dv, 1e-5, "dv, fused vs unfused");
    }

    (float[] O, float[] Dq, float[] Dk, float[] Dv) Unfused(FusedAttentionShape shape, Inputs x, Parts parts)
    {
        var a = shape.Scores;
        int b = a.Batch, h = a.Heads, lq = a.QueryLength, lk = a.KeyLength, d = shape.DKv;
        int n = (int)a.Elements;
        using var q = GpuBuffer.From<float>(Ctx, x.Q);
        using var k = GpuBuffer.From<float>(Ctx, x.K);
        using var v = GpuBuffer.From<float>(Ctx, x.V);
        using var dO = GpuBuffer.From<float>(Ctx, x.DO);
        using var probs = new GpuBuffer(Ctx, n * 4L);
        using var dropped = new GpuBuffer(Ctx, n * 4L);
        using var dp = new GpuBuffer(Ctx, n * 4L);
        using var o = new GpuBuffer(Ctx, shape.QueryElements * 4);
        using var dq = new GpuBuffer(Ctx, shape.QueryElements * 4);
        using var dk = new GpuBuffer(Ctx, shape.KeyElements * 4);
        using var dv = new GpuBuffer(Ctx, shape.KeyElements * 4);
        using var buckets = Optional(Ctx, parts.Buckets(x));
        using var bias = Optional(Ctx, parts.BiasWeight(x));
        using var mask = Optional(Ctx, parts.KeyMask(x));
        using var seed = GpuBuffer.From<uint>(Ctx, [Seed]);
        using (var g = new CommandGraph(Ctx))
        {
            MatMulKernel.Run(g, q, k, probs, MatMulSpec.AttentionQKt(b, h, lq, lk, d));
            AttentionSoftmaxKernel.Forward(g, probs, buckets, bias, mask, a);
            g.Copy(probs, dropped);
            DropoutKernel.Forward(g, dropped, n, parts.DropoutRate, seed, Stream);
            MatMulKernel.Run(g, dropped, v, o, MatMulSpec.AttentionPV(b, h, lq, lk, d));
            MatMulKernel.Run(g, dO, v, dp, MatMulSpec.AttentionQKt(b, h, lq, lk, d));
            DropoutKernel.Backward(g, dp, n, parts.DropoutRate, seed, Stream);
            SoftmaxBackwardKernel.Backward(g, probs, dp, (int)a.Rows, lk);
            MatMulKernel.Run(g, dp, k, dq, MatMulSpec.AttentionPV(b, h, lq, lk, d));
            MatMulKernel.Run(g, dp, q, dk, MatMulSpec.AttentionPtV(b, h, lq, lk, d));
            MatMulKernel.Run(g, dropped, dO, dv, MatMulSpec.AttentionPtV(b, h, lq, lk, d));
            g.Run();
        }
        return (o.Download<float>(), dq.Download<float>(), dk.Download<float>(), dv.Download<float>());
    }

    /// <summary>With one-hot values v[j] = e_j, o[i] is row i of the dropped probabilities; with
    /// one-hot output gradients dO[i] = e_i, dv[j] is column j of them. Both must be zero exactly
    /// where DropoutKernel zeroes a tensor of ones of the probabilities' shape. The length (and so
    /// d_kv) spans several blocks of keys and is one <see cref="Cases"/> and
    /// <see cref="MatrixUnitCases"/> compile anyway: 64 in lavapipe's tiling, 32 in the others
    /// (an odd d_kv of its own cost lavapipe 33 s to compile).</summary>
    [SkippableTheory, InlineData(FusedTiles.Cpu), InlineData(FusedTiles.Gpu), InlineData(FusedTiles.MatrixUnits)]
    public void DropsExactlyWhatDropoutKernelDrops(FusedTiles tiles)
    {
        const int batch = 2, heads = 3;
        int len = tiles == FusedTiles.Cpu ? 64 : 32;
        var shape = new FusedAttentionShape(new AttentionShape(batch, heads, len, len), len);
        var x = Inputs.Random(shape, 41);
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < len; r++)
                for (int h = 0; h < heads; h++)
                    for (int c = 0; c < len; c++)
                    {
                        long at = ((long)(b * len + r) * heads + h) * len + c;
                        x.V[at] = x.DO[at] = r == c ? 1f : 0f;
                        // Small scores keep every probability far from underflow.
                        x.Q[at] *= 0.1f;
                    }
        var parts = new Parts(Bias: false, Mask: false, Dropout: true);
        var (o, lse) = Forward(shape, x, parts, tiles);
        var (_, _, dv) = Backward(shape, x, o, lse, parts, tiles);

        var ones = Filled(shape.Scores.Elements, 1f);
        using (var gones = GpuBuffer.From<float>(Ctx, ones))
        using (var seed = GpuBuffer.From<uint>(Ctx, [Seed]))
        {
            using (var g = new CommandGraph(Ctx))
            {
                DropoutKernel.Forward(g, gones, ones.Length, Rate, seed, Stream);
                g.Run();
            }
            ones = gones.Download<float>();
        }
        int dropped = 0;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < len; i++)
                    for (int j = 0; j < len; j++)
                    {
                        bool kept = ones[((b * heads + h) * len + i) * len + j] != 0f;
                        dropped += kept ? 0 : 1;
                        Assert.Equal(kept, o[((b * len + i) * heads + h) * len + j] != 0f);
                        Assert.Equal(kept, dv[((b * len + j) * heads + h) * len + i] != 0f);
                    }
        // About a tenth of the elements (Rate): the test did see drops. The bounds are over 5
        // standard deviations of the binomial count away at the smaller length (6144 elements).
        int elements = batch * heads * len * len;
        Assert.InRange(dropped, elements * 8 / 100, elements * 12 / 100);
    }

    /// <summary>Batch 1 has every key masked, and with QueryOffset -1 query 0 of batch 0 sees no
    /// key either: those queries get o = 0, logsumexp +inf and zero gradients, never NaN.</summary>
    [SkippableTheory, InlineData(FusedTiles.Cpu), InlineData(FusedTiles.Gpu), InlineData(FusedTiles.MatrixUnits)]
    public void FullyMaskedQueriesGiveZeros(FusedTiles tiles)
    {
        var shape = new FusedAttentionShape(new AttentionShape(2, 2, 7, 33, Causal: true, QueryOffset: -1), 16);
        var x = AsMultiplied(Inputs.Random(shape, 51), tiles);
        Array.Fill(x.KeyMask, 1, 0, 33);
        Array.Fill(x.KeyMask, 0, 33, 33);
        var parts = new Parts(Bias: true, Mask: true, Dropout: true);
        var (o, lse) = Forward(shape, x, parts, tiles);
        var (refO, refLse) = ReferenceForward(shape, x, parts);
        Check.Close(refO, o, Tolerance(tiles), "o");
        Check.Close(refLse, lse, Tolerance(tiles), "logsumexp");
        var (dq, dk, dv) = Backward(shape, x, o, lse, parts, tiles);
        var expected = ReferenceBackward(shape, x, o, lse, parts);
        Check.Close(expected.Dq, dq, Tolerance(tiles), "dq");
        Check.Close(expected.Dk, dk, Tolerance(tiles), "dk");
        Check.Close(expected.Dv, dv, Tolerance(tiles), "dv");
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 7; i++)
                {
                    bool none = b == 1 || i == 0;
                    Assert.Equal(none, float.IsPositiveInfinity(lse[(b * 2 + h) * 7 + i]));
                    var row = o.AsSpan(((b * 7 + i) * 2 + h) * 16, 16).ToArray();
                    var grad = dq.AsSpan(((b * 7 + i) * 2 + h) * 16, 16).ToArray();
                    if (none) Assert.All(row.Concat(grad), value => Assert.Equal(0f, value));
                }
        Assert.All(dk.Concat(dv), value => Assert.True(float.IsFinite(value)));
    }

    /// <summary>A KV-cached decoder step: one query at position 20 against the 21 keys cached so
    /// far, in buffers holding 33 rows per batch entry (and q, o with 3 spare rows). Spare rows
    /// hold NaN, which must not reach any result, and the gradients' spare rows must come back
    /// untouched.</summary>
    [SkippableTheory, InlineData(FusedTiles.Cpu), InlineData(FusedTiles.Gpu), InlineData(FusedTiles.MatrixUnits)]
    public void SpareRowsOfACacheAreNeitherReadNorWritten(FusedTiles tiles)
    {
        var shape = new FusedAttentionShape(new AttentionShape(2, 3, 1, 21, Causal: true, QueryOffset: 20), 16) { QueryRows = 4, KeyRows = 33 };
        var x = AsMultiplied(Inputs.Random(shape, 61), tiles);
        var parts = new Parts(Bias: true, Mask: true, Dropout: true);
        var (o, lse) = Forward(shape, x, parts, tiles);
        var (refO, refLse) = ReferenceForward(shape, x, parts);
        Check.Close(refO, o, Tolerance(tiles), "o");
        Check.Close(refLse, lse, Tolerance(tiles), "logsumexp");
        const float sentinel = 12345f;
        var (dq, dk, dv) = Backward(shape, x, refO, refLse, parts, tiles, sentinel);
        var expected = ReferenceBackward(shape, x, refO, refLse, parts, sentinel);
        // The sentinels make max |expected| 12345: compare without them, then check they survive.
        foreach (var (name, want, got, rows, length) in new[] { ("dq", expected.Dq, dq, 4, 1), ("dk", expected.Dk, dk, 33, 21), ("dv", expected.Dv, dv, 33, 21) })
        {
            int row = 3 * 16;
            var live = Enumerable.Range(0, want.Length).Where(i => i / row % rows < length).ToArray();
            Check.Close(live.Select(i => want[i]).ToArray(), live.Select(i => got[i]).ToArray(), Tolerance(tiles), name);
            Assert.All(Enumerable.Range(0, want.Length).Except(live), i => Assert.Equal(sentinel, got[i]));
        }
    }

    /// <summary>Cases for 16-bit activations, each in bf16 and in fp16: the cases of
    /// <see cref="Cases"/> at d_kv ≤ 8 in both portable tilings, and <see cref="MatrixUnitCases"/>
    /// on the matrix units. The portable kernels read k and v through the 16-bit vec4 view where
    /// d_kv is a multiple of 4 (8 here) and element by element otherwise (5: with a tail; 1), and q
    /// and o element by element, so these take every path of the 16-bit loads and stores; d_kv 64
    /// adds only more of the same unrolled code, which cost lavapipe 64 s to compile for the two
    /// storages (cold, on a 2-core CI-like machine). The golden models run 16-bit activations
    /// through lavapipe's tiling at d_kv 32 (ActivationPrecisionTests, "vulkan-fused").
    /// (TheoryData takes at most ten parameters: these rows have eleven.)</summary>
    public static IEnumerable<object[]> HalfCases() =>
        from storage in new[] { ActivationPrecision.Bf16, ActivationPrecision.Fp16 }
        from c in Cases().Where(c => (int)c[4] <= 8)
                         .Concat(MatrixUnitCases().Select(c => (object[])[.. c, FusedTiles.MatrixUnits]))
        select (object[])[.. c, storage];

    /// <summary>The most two roundings to nearest of values that agree can set their results apart,
    /// relative to the largest: one unit in the last place, 2^-7 of a value for bf16's 8
    /// significant bits, 2^-10 for fp16's 11.</summary>
    static double Ulp(ActivationPrecision storage) => storage switch
    {
        ActivationPrecision.Bf16 => 1.0 / 128,
        ActivationPrecision.Fp16 => 1.0 / 1024,
        _ => 0,
    };

    /// <summary>q, k, v and o stored in 16 bits. The kernels widen what they load and do the fp32
    /// kernels' arithmetic in the same order, so given the same (rounded) values as fp32 they must
    /// give o rounded from the fp32 kernels' o bit for bit, the same logsumexp and, from the
    /// stored o, the same gradients: that catches a misread element, a wrong view or a narrowing
    /// that is not round-to-nearest-even. Against the reference on the rounded inputs, with o
    /// rounded as stored: the fp32 kernels' bound (<see cref="Tolerance"/>) plus one
    /// <see cref="Ulp"/> for the two roundings of o; the gradients from the same stored o take no
    /// rounding of their own.</summary>
    [SkippableTheory, MemberData(nameof(HalfCases))]
    public void With16BitActivationsMatchesFp32KernelsAndReference(int batch, int heads, int lq, int lk, int dkv, bool bias, bool mask, bool causal, bool dropout,
                                                                   FusedTiles tiles, ActivationPrecision storage) =>
        MatchesFp32KernelsAndReference(new FusedAttentionShape(new AttentionShape(batch, heads, lq, lk, causal), dkv), new Parts(bias, mask, dropout), tiles, storage,
                                       batch * 1000 + lk + 2);

    /// <summary>q, k, v and o each stored otherwise, so that a kernel taking one's storage for
    /// another's reads garbage.</summary>
    [SkippableTheory, InlineData(FusedTiles.Cpu), InlineData(FusedTiles.MatrixUnits)]
    public void MixedStoragesMatchFp32KernelsAndReference(FusedTiles tiles)
    {
        var shape = new FusedAttentionShape(new AttentionShape(2, 3, 7, 33, Causal: true), 16);
        var parts = new Parts(Bias: true, Mask: true, Dropout: true);
        MatchesFp32KernelsAndReference(shape, parts, tiles, new(ActivationPrecision.Bf16, ActivationPrecision.Fp16, ActivationPrecision.Fp32, ActivationPrecision.Bf16), 21);
        MatchesFp32KernelsAndReference(shape, parts, tiles, new(ActivationPrecision.Fp16, ActivationPrecision.Fp32, ActivationPrecision.Bf16, ActivationPrecision.Fp16), 22);
    }

    /// <summary>The checks of <see cref="With16BitActivationsMatchesFp32KernelsAndReference"/>.</summary>
    void MatchesFp32KernelsAndReference(FusedAttentionShape shape, Parts parts, FusedTiles tiles, Storages storages, int seed)
    {
        var x = AsMultiplied(Inputs.Random(shape, seed), tiles).Stored(storages);
        string what = $"{storages} {tiles} {shape} {parts}";
        var (o, lse, dq, dk, dv) = SameAsFp32Kernels(shape, x, parts, tiles, storages, what);
        var (refO, refLse) = ReferenceForward(shape, x, parts);
        Check.Close(Rounded(refO, storages.O), o, Tolerance(tiles) + Ulp(storages.O), $"o, {what}");
        Check.Close(refLse, lse, 1e-5, $"logsumexp, {what}");
        var expected = ReferenceBackward(shape, x, o, lse, parts);
        Check.Close(expected.Dv, dv, Tolerance(tiles), $"dv, {what}");
        // As in BackwardMatchesReference, a softmax over one key is constant: dq and dk vanish.
        if (shape.Scores.KeyLength == 1) Assert.All(dq.Concat(dk), g => Assert.True(Math.Abs(g) <= 1e-5, $"{g} should vanish with a single key"));
        else
        {
            Check.Close(expected.Dq, dq, Tolerance(tiles), $"dq, {what}");
            Check.Close(expected.Dk, dk, Tolerance(tiles), $"dk, {what}");
        }
    }

    /// <summary>The forward's o and logsumexp and the backward's gradients from it with q, k, v, o
    /// stored as <paramref name="storages"/> (x already rounded to them), checked to be bit for bit
    /// the fp32 kernels' on the same values, o rounded as stored.</summary>
    (float[] O, float[] Lse, float[] Dq, float[] Dk, float[] Dv) SameAsFp32Kernels(FusedAttentionShape shape, Inputs x, Parts parts, FusedTiles tiles, Storages storages, string what)
    {
        var (o, lse) = Forward(shape, x, parts, tiles, storages: storages);
        var (o32, lse32) = Forward(shape, x, parts, tiles);
        Check.BitIdentical(Rounded(o32, storages.O), o, $"o, {what}, against the fp32 kernel's rounded");
        Check.BitIdentical(lse32, lse, $"logsumexp, {what}, against the fp32 kernel's");
        var (dq, dk, dv) = Backward(shape, x, o, lse, parts, tiles, storages: storages);
        var (dq32, dk32, dv32) = Backward(shape, x, o, lse, parts, tiles);
        Check.BitIdentical(dq32, dq, $"dq, {what}, against the fp32 kernel's");
        Check.BitIdentical(dk32, dk, $"dk, {what}, against the fp32 kernel's");
        Check.BitIdentical(dv32, dv, $"dv, {what}, against the fp32 kernel's");
        return (o, lse, dq, dk, dv);
    }

    /// <summary>q and k up to 1e5 in magnitude, past fp16's 65504, and v of ±1e5: stored as fp16
    /// they saturate at ±65504; stored as bf16 they keep their size and the matrix units' fp16
    /// operands saturate them. Scores reach 65504²·16 ≈ 7e10 (fine in fp32), each query's softmax
    /// is nearly one key, and o ≈ ±65504 / (1 - rate) with dropout saturates again as it is stored
    /// in fp16. Nothing may become infinite or NaN, and the results must still be the fp32 kernels'
    /// on the same values, rounded (the reference is left out: a score's fp32 rounding, ~1e3 here,
    /// decides whether its probability is 0 or 1).</summary>
    [SkippableTheory]
    [InlineData(FusedTiles.Cpu, ActivationPrecision.Fp16)]
    [InlineData(FusedTiles.MatrixUnits, ActivationPrecision.Bf16)]
    [InlineData(FusedTiles.MatrixUnits, ActivationPrecision.Fp16)]
    public void ActivationsBeyondFp16RangeGiveFiniteResults(FusedTiles tiles, ActivationPrecision storage)
    {
        var shape = new FusedAttentionShape(new AttentionShape(2, 2, 33, 33, Causal: true), 16);
        var x = Inputs.Random(shape, 81);
        for (int i = 0; i < x.Q.Length; i++)
        {
            x.Q[i] *= 1e5f;
            x.K[i] *= 1e5f;
            x.V[i] = x.V[i] < 0 ? -1e5f : 1e5f;
        }
        Assert.Contains(x.Q, value => Math.Abs(value) > 65520);
        x = x.Stored(storage);
        var parts = new Parts(Bias: true, Mask: false, Dropout: true);
        var (o, lse, dq, dk, dv) = SameAsFp32Kernels(shape, x, parts, tiles, storage, $"{storage} {tiles}");
        Assert.All(o.Concat(lse), value => Assert.True(float.IsFinite(value), $"{value} in o or the logsumexp"));
        Assert.All(dq.Concat(dk).Concat(dv), value => Assert.True(float.IsFinite(value), $"{value} in a gradient"));
        if (storage == ActivationPrecision.Fp16) Assert.Contains(o, value => Math.Abs(value) == 65504f);
    }

    /// <summary>A 16-bit gradient or output gradient is refused: they stay fp32 everywhere.</summary>
    [SkippableFact]
    public void SixteenBitGradientsAreRefused()
    {
        var shape = new FusedAttentionShape(new AttentionShape(1, 1, 4, 4), 8);
        using var q = GpuBuffer.Activations(Ctx, shape.QueryElements, ActivationPrecision.Bf16);
        using var lse = new GpuBuffer(Ctx, shape.Scores.Rows * 4);
        using var fp32 = new GpuBuffer(Ctx, shape.QueryElements * 4);
        using var g = new CommandGraph(Ctx);
        var e = Assert.Throws<ArgumentException>(() => FusedAttentionKernel.Backward(g, q, q, q, q, lse, fp32, q, fp32, fp32, null, null, null, shape, 0f, null, 0, FusedAttentionTiling.Cpu));
        Assert.Contains("binding 10", e.Message);
    }

    /// <summary>The reference backward is the gradient of the reference forward: central finite
    /// differences in double of Σ dO·o with respect to q, k and v, with bias, mask, causality,
    /// dropout and spare rows all on.</summary>
    [SkippableFact]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        var shape = new FusedAttentionShape(new AttentionShape(2, 2, 3, 5, Causal: true, QueryOffset: 1), 4) { QueryRows = 4, KeyRows = 6 };
        var x = Inputs.Random(shape, 71);
        // A high rate, so that some of these 60 probabilities are dropped (about 18).
        const float rate = 0.3f;
        double[] Clean(float[] a) => FiniteDifference.ToDouble(a).Select(value => double.IsNaN(value) ? 0 : value).ToArray();
        var q = Clean(x.Q);
        var k = Clean(x.K);
        var v = Clean(x.V);
        var dO = Clean(x.DO);
        var bias = FiniteDifference.ToDouble(x.BiasWeight);
        var o = new double[q.Length];
        var lse = new double[shape.Scores.Rows];
        double Loss(double[] qs, double[] ks, double[] vs)
        {
            FusedAttentionReference.Forward<double>(qs, ks, vs, o, lse, x.Buckets, bias, x.KeyMask, shape, rate, Seed, Stream);
            return FiniteDifference.Dot(dO, o);
        }
        var fdq = FiniteDifference.Gradient(q, qs => Loss(qs, k, v));
        var fdk = FiniteDifference.Gradient(k, ks => Loss(q, ks, v));
        var fdv = FiniteDifference.Gradient(v, vs => Loss(q, k, vs));

        Loss(q, k, v);
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        FusedAttentionReference.Backward<double>(q, k, v, o, lse, dO, dq, dk, dv, x.Buckets, bias, x.KeyMask, shape, rate, Seed, Stream);
        // Central differences in double with h = 1e-6: truncation ~h², rounding ~1e-16·|loss|/h,
        // both below 1e-9 for these order-one losses.
        Assert.True(FiniteDifference.MaxRelativeError(fdq, dq) <= 1e-7, "dq vs finite differences");
        Assert.True(FiniteDifference.MaxRelativeError(fdk, dk) <= 1e-7, "dk vs finite differences");
        Assert.True(FiniteDifference.MaxRelativeError(fdv, dv) <= 1e-7, "dv vs finite differences");
        Assert.Contains(dv, value => value != 0);
    }
}
