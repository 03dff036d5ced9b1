namespace VkPrompt.Runtime.Kernels;

/// <summary>Shape of one fused attention over activations: q, o (and dO, dq) are
/// [Batch, QueryRows, Heads·DKv] and k, v (and dk, dv) [Batch, KeyRows, Heads·DKv], head h being
/// the column block h·DKv of a row; only the first QueryLength and KeyLength rows of each batch
/// entry take part (a KV cache holds more rows than are attended). The logsumexp is
/// [Batch, Heads, QueryLength]. <see cref="Scores"/> carries the lengths and causality as
/// <see cref="AttentionSoftmaxKernel"/> reads them.</summary>
internal readonly record struct FusedAttentionShape(AttentionShape Scores, int DKv)
{
    public int QueryRows { get; init; } = Scores.QueryLength;
    public int KeyRows { get; init; } = Scores.KeyLength;

    public long QueryElements => (long)Scores.Batch * QueryRows * Scores.Heads * DKv;
    public long KeyElements => (long)Scores.Batch * KeyRows * Scores.Heads * DKv;
}

/// <summary>Workgroup shape of the portable fused attention shaders (fused_attention.comp and
/// its backward): <paramref name="Invocations"/> rows per workgroup, one per invocation
/// (queries, or keys in the dk/dv pass), streaming over the other operand <paramref name="Block"/>
/// rows at a time, through shared memory when <paramref name="Staged"/>
/// (shaders/include/fused_attention.glsl says why CPUs do without).</summary>
internal readonly record struct FusedAttentionTiling(int Invocations, int Block, bool Staged)
{
    // lavapipe runs a workgroup on one thread with 8 invocations to a 256-bit vector. At 8 heads
    // x 512² x d_kv 64 on llvmpipe (2 cores, AVX2) the unstaged kernels ran 2-3x faster than the
    // staged ones; 16 invocations or blocks of 32 instead of 8 and 16 made no difference beyond
    // the noise of a shared machine.
    public static FusedAttentionTiling Cpu => new(8, 16, false);

    // 64 queries per workgroup amortise each staged block over two warps / one wave; blocks of
    // 32 halve the barriers of 16 where shared memory allows (d_kv 64 needs 16.6 KiB for 32 in
    // the dk/dv pass, over the 16 KiB Vulkan guarantees, so such devices get 16).
    public static FusedAttentionTiling For(DevicePlan plan, int dkv)
    {
        if (!plan.PlansForGpu) return Cpu;
        var caps = plan.Capabilities;
        int block = 32;
        while (block > 1 && SharedBytes(block, dkv) > caps.MaxComputeSharedMemorySize) block /= 2;
        return new(64, block, true);
    }

    /// <summary>Shared memory of the staged backward's dk/dv pass, the largest user: two blocks
    /// and a logsumexp and Δ per staged row.</summary>
    public static long SharedBytes(int block, int dkv) => 4L * (2L * block * dkv + 2 * block);

    public int[] Specialization(int dkv) => [Invocations, Block, dkv, Staged ? 1 : 0];
}

/// <summary>Shape of the fused attention on the matrix units (fused_attention_coopmat*.comp):
/// <paramref name="Warps"/> subgroups of 16 rows each per workgroup, streaming the other operand
/// <paramref name="Block"/> rows at a time.</summary>
internal readonly record struct FusedAttentionMatrixUnitsTiling(int Warps, int Block)
{
    // 64 rows a workgroup, as the portable kernels' GPU tiling, with the deepest block of 64, 32
    // or 16 whose shared memory fits; two subgroups where four would not even at 16. At d_kv 64 on
    // a device with 48 KiB (NVIDIA's), the forward takes blocks of 64 (44.0 KiB) and the backward,
    // which stages two operands of its own and two products a block, of 32 (44.3 KiB). Untimed:
    // the rule is the first that fits, not the fastest.
    internal static readonly FusedAttentionMatrixUnitsTiling[] Candidates = [new(4, 64), new(4, 32), new(4, 16), new(2, 16)];

    /// <summary>The shaders' PARTS: invocations sharing a row of a subgroup's 16 (each a contiguous run
    /// of its columns) in subgroups of 16 or more.</summary>
    internal static int Parts(int subgroup) => subgroup >= 16 ? subgroup / 16 : 1;

    /// <summary>The shaders' LANE_ROWS: whole rows each invocation owns in subgroups of fewer than 16.</summary>
    internal static int LaneRows(int subgroup) => subgroup >= 16 ? 1 : 16 / subgroup;

    /// <summary>Scores an invocation holds in registers per block, which the candidates keep to at
    /// most 64, the most subgroups of 16 hold at blocks of 64: subgroups of 8, whose invocations
    /// own two rows, take blocks of 32. (A rule of registers, not measured: no such device was at hand.)</summary>
    int ScoresPerInvocation(int subgroup) => LaneRows(subgroup) * Block / Parts(subgroup);

    /// <summary>Shared memory of the kernel (include/fused_attention_coopmat_forward.glsl and
    /// _backward.glsl, whose declarations this follows): the workgroup's own operands and each
    /// subgroup's scratch, the block's two operands, and the forward's row reductions or the
    /// backward's per-query logsumexp and Δ.</summary>
    public long SharedBytes(bool backward, int dkv, int subgroup)
    {
        int parts = Parts(subgroup);
        long rowHalves = dkv + 8, rows = 16L * Warps;
        long products = (backward ? 2L : 1L) * Block / 16 * TileStride(Block / parts);
        long scratch = Math.Max(products, dkv / 16 * TileStride(dkv / parts));
        long sa = (backward ? 2 : 1) * rows * rowHalves / 4 + Warps * scratch;
        long sb = 2L * Block * rowHalves / 4;
        return 8 * (sa + sb) + (backward ? 8L * Block : 4L * Warps * 16 * parts);
    }

    // The shaders' TILE_STRIDE: uvec2s between staged tiles, from the columns each of a row's
    // invocations reads.
    static long TileStride(int columnsPerPart) => (columnsPerPart / 16) switch { 1 => 136, 2 => 132, _ => 130 };

    internal int[] Specialization(int dkv, int subgroup) => [Warps * subgroup, Block, dkv, 0, subgroup, Warps];

    /// <summary>The tiling for d_kv <paramref name="dkv"/> on the context's matrix units, or null
    /// where the kernel cannot run it: subgroups of 8, 16, 32 or 64, d_kv a multiple of 16 up to
    /// 128, or 64 where an invocation owns two rows (at 8 wide: it holds d_kv · <see cref="LaneRows"/>
    /// / <see cref="Parts"/> output floats in registers), and the shared memory.</summary>
    /// <exception cref="GpuException"><see cref="GpuOptions.MatrixUnitsFusedAttentionTiling"/> is malformed or
    /// asks for a tiling the kernel or the device cannot run at this d_kv.</exception>
    public static FusedAttentionMatrixUnitsTiling? For(GpuContext context, int dkv, bool backward)
    {
        int subgroup = (int)context.Plan.FusedAttentionSubgroupSize;
        if (dkv % 16 != 0 || subgroup is not (8 or 16 or 32 or 64) || dkv * LaneRows(subgroup) > 128) return null;
        if (context.Options.MatrixUnitsFusedAttentionTiling is { } text) return Parse(text, context, dkv, backward);
        foreach (var t in Candidates)
            if (t.ScoresPerInvocation(subgroup) <= 64 && t.Fits(context, dkv, backward)) return t;
        return null;
    }

    bool Fits(GpuContext context, int dkv, bool backward)
    {
        int subgroup = (int)context.Plan.FusedAttentionSubgroupSize;
        return SharedBytes(backward, dkv, subgroup) <= context.Capabilities.MaxComputeSharedMemorySize
               && (long)Warps * subgroup <= context.Capabilities.MaxComputeWorkGroupInvocations;
    }

    /// <summary>The forward's or the backward's tiling of <see cref="GpuOptions.MatrixUnitsFusedAttentionTiling"/> ("WxB" for
    /// both, or "WxB,WxB"), checked: a block of a multiple of 16 rows that gives each invocation of
    /// a row whole runs of four columns, and a workgroup the device runs with the shared memory it has.</summary>
    static FusedAttentionMatrixUnitsTiling Parse(string text, GpuContext context, int dkv, bool backward)
    {
        string setting = context.Options.Describe(nameof(GpuOptions.MatrixUnitsFusedAttentionTiling), text);
        var kernels = text.Split(',');
        if (kernels.Length > 2) throw new GpuException($"{setting}: expected WxB or WxB,WxB (forward, backward), e.g. 4x64,4x32");
        var v = TilingText.Parse(kernels[backward ? kernels.Length - 1 : 0], setting, "WxB or WxB,WxB (forward, backward), e.g. 4x64,4x32", count: 2);
        var t = new FusedAttentionMatrixUnitsTiling(v[0], v[1]);
        int subgroup = (int)context.Plan.FusedAttentionSubgroupSize;
        if (t.Warps < 1 || t.Block < 16 || t.Block % 16 != 0 || t.Block / Parts(subgroup) % 4 != 0 || !t.Fits(context, dkv, backward))
            throw new GpuException($"{setting}: the {(backward ? "backward" : "forward")} needs at least one subgroup, a block of a multiple of 16 rows " +
                                   $"({(subgroup >= 16 ? $"{Parts(subgroup)} invocation(s) to a row, each a multiple of 4 of its columns" : $"{LaneRows(subgroup)} whole rows an invocation")}), at most {context.Capabilities.MaxComputeWorkGroupInvocations} invocations " +
                                   $"and {context.Capabilities.MaxComputeSharedMemorySize} bytes of shared memory; {t.Warps}x{t.Block} at d_kv {dkv} needs {t.SharedBytes(backward, dkv, subgroup)}");
        return t;
    }
}

/// <summary>
/// Fused T5 attention, in the manner of FlashAttention (Dao et al. 2022): per (batch, head),
/// o = dropout(softmax(q·kᵀ + bias, masked))·v with no 1/sqrt(d_kv) scaling, without the
/// [Lq, Lk] score matrix ever being stored. Bias, key mask and causality mean what they mean
/// in <see cref="AttentionSoftmaxKernel"/> (buckets [Lq + Lk - 1] with biasWeight [numBuckets, H],
/// keyMask [B, Lk]; null when absent). Dropout on the probabilities drops exactly the elements
/// <see cref="DropoutKernel"/> would drop for the same seed buffer and stream, element (b, h, i, j)
/// of the [B, H, Lq, Lk] probabilities having index ((b·H + h)·Lq + i)·Lk + j. The forward also
/// writes each query's logsumexp, which is all the backward needs to recompute the
/// probabilities; a query with every key masked gets o = 0 and logsumexp = +inf.
/// q, k, v and o may each be 16-bit activations (<see cref="GpuBuffer.Storage"/>): the kernels
/// widen them as they load them, keep every sum, the softmax and the logsumexp in fp32, and round
/// o as they store it; the backward reads o as stored. dO, the logsumexp and the gradients are
/// fp32. Outputs must not overlap inputs.
/// </summary>
internal static class FusedAttentionKernel
{
    const int PushBytes = 44;
    static readonly KernelLayout ForwardLayout = new(
        [Access.Read, Access.Read, Access.Read, Access.Read, Access.Read, Access.Read, Access.Read, Access.Write, Access.Write], PushBytes);
    // Both backward passes declare two outputs; the query pass binds dq to both (it writes only
    // the first), since a stand-in bound there would count as written for the barriers.
    static readonly KernelLayout BackwardLayout = new(
        [.. Enumerable.Repeat(Access.Read, 10), Access.Write, Access.Write], PushBytes);
    // The builds that take 16-bit activations (the _half ones and those on the matrix units): q,
    // k, v and o at bindings 4-7, and q again at 0-3, where it stands in for an absent optional
    // input (never read there).
    const uint HalfBindings = 0xff;
    static readonly KernelLayout ForwardHalfLayout = ForwardLayout with { HalfBindings = HalfBindings };
    static readonly KernelLayout BackwardHalfLayout = BackwardLayout with { HalfBindings = HalfBindings };

    /// <summary>Constants padded to 7, after the most any build has of its own (the backward on
    /// the matrix units' seven), so that the storages of q, k, v and o follow as constants 7-10
    /// (include/fused_attention.glsl).</summary>
    static int[] Padded(int[] specialization) => [.. specialization, .. new int[7 - specialization.Length]];

    /// <summary>The specialization of a matrix-unit build, which takes 16-bit activations whatever
    /// they are: its own constants, then the storages of q, k, v and o.</summary>
    static int[] WithStorages(int[] specialization, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o) =>
        [.. Padded(specialization), q.Storage.ShaderCode(), k.Storage.ShaderCode(), v.Storage.ShaderCode(), o.Storage.ShaderCode()];

    static readonly StoredKernel PortableForward = new("fused_attention", ForwardLayout, HalfBindings);
    static readonly StoredKernel PortableBackward = new("fused_attention_backward", BackwardLayout, HalfBindings);

    readonly record struct Push(uint Batch, uint Heads, uint QueryLength, uint KeyLength, uint QueryRows, uint KeyRows,
                                AttentionOptions Flags, int QueryOffset, uint Threshold, float Scale, uint Stream);

    /// <summary>o and logSumExp from q, k, v. <paramref name="seed"/> (one uint, read when the
    /// graph runs) is needed when <paramref name="dropoutRate"/> &gt; 0.</summary>
    public static void Forward(CommandGraph g, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp,
                               GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask, FusedAttentionShape shape,
                               float dropoutRate = 0f, GpuBuffer? seed = null, uint stream = 0)
    {
        if (MatrixUnitsTiling(g.Context, shape.DKv, backward: false) is { } units)
            ForwardOnMatrixUnits(g, q, k, v, o, logSumExp, buckets, biasWeight, keyMask, shape, dropoutRate, seed, stream, units);
        else
            Forward(g, q, k, v, o, logSumExp, buckets, biasWeight, keyMask, shape, dropoutRate, seed, stream, FusedAttentionTiling.For(g.Context.Plan, shape.DKv));
    }

    internal static void Forward(CommandGraph g, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp,
                                 GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask, FusedAttentionShape shape,
                                 float dropoutRate, GpuBuffer? seed, uint stream, FusedAttentionTiling t)
    {
        const string name = "fused_attention";
        var push = Check(name, g.Context.Capabilities, shape, buckets, biasWeight, keyMask, dropoutRate, seed, stream, t);
        if (!CheckForwardBuffers(name, q, k, v, o, logSumExp, shape)) return;
        var kernel = PortableForward.For(g.Context, Padded(t.Specialization(shape.DKv)), q, k, v, o);
        g.Dispatch(kernel, Groups(g, shape.Scores.QueryLength, shape, t.Invocations), push,
                   [.. Optional(q, buckets, biasWeight, keyMask, seed), q, k, v, o, logSumExp]);
    }

    /// <summary>Whether the fused attention runs on the matrix units here, and with which tiling
    /// (the forward's or the backward's): where the context puts every product on them
    /// (<see cref="GpuOptions.MatrixUnitsAllProducts"/>, the same rounding of q, k, v, the
    /// probabilities, dO and dS to fp16 as the unfused products make there) through
    /// VK_KHR_cooperative_matrix or its emulation, the build has both kernels, and
    /// <see cref="FusedAttentionMatrixUnitsTiling.For"/> has a tiling for d_kv for both: a backward
    /// recomputing the probabilities from scores rounded otherwise than the forward's would not
    /// match its logsumexp. Null otherwise.</summary>
    public static FusedAttentionMatrixUnitsTiling? MatrixUnitsTiling(GpuContext context, int dkv, bool backward) =>
        context.Plan.FusedAttentionOnMatrixUnits
        && Runtime.Kernel.IsEmbedded(Shader(context, ForwardOnUnits))
        && Runtime.Kernel.IsEmbedded(Shader(context, BackwardOnUnits))
        && FusedAttentionMatrixUnitsTiling.For(context, dkv, !backward) is not null
            ? FusedAttentionMatrixUnitsTiling.For(context, dkv, backward)
            : null;

    const string ForwardOnUnits = "fused_attention_coopmat", BackwardOnUnits = "fused_attention_coopmat_backward";

    /// <summary>The build of <paramref name="name"/> on the context's units; on the emulated ones at
    /// subgroups narrower than 32, the _narrow build, whose accumulators hold room for them.</summary>
    static string Shader(GpuContext context, string name) =>
        MatMulKernel.MatrixUnitsShader(context, name)
        + (context.Plan.MatrixUnits == MatrixUnits.Emulated && context.Plan.FusedAttentionSubgroupSize < 32 ? "_narrow" : "");

    internal static void ForwardOnMatrixUnits(CommandGraph g, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp,
                                              GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask, FusedAttentionShape shape,
                                              float dropoutRate, GpuBuffer? seed, uint stream, FusedAttentionMatrixUnitsTiling t)
    {
        var name = Shader(g.Context, ForwardOnUnits);
        var push = Check(name, g.Context.Capabilities, shape, buckets, biasWeight, keyMask, dropoutRate, seed, stream, null);
        CheckOnMatrixUnits(name, g.Context, shape, t, backward: false);
        if (!CheckForwardBuffers(name, q, k, v, o, logSumExp, shape)) return;
        var kernel = g.Context.MatrixUnitsKernel(name, ForwardHalfLayout, WithStorages(t.Specialization(shape.DKv, (int)g.Context.Plan.FusedAttentionSubgroupSize), q, k, v, o));
        g.Dispatch(kernel, Groups(g, shape.Scores.QueryLength, shape, 16 * t.Warps), push,
                   [.. Optional(q, buckets, biasWeight, keyMask, seed), q, k, v, o, logSumExp]);
    }

    static void CheckOnMatrixUnits(string name, GpuContext context, FusedAttentionShape shape, FusedAttentionMatrixUnitsTiling t, bool backward)
    {
        if (!context.UsesMatrixUnits) throw new GpuException($"{name}: needs a context that uses the matrix units (GpuContext.UsesMatrixUnits)");
        int subgroup = (int)context.Plan.FusedAttentionSubgroupSize;
        if (shape.DKv % 16 != 0 || t.Block % 16 != 0 || t.Block / FusedAttentionMatrixUnitsTiling.Parts(subgroup) % 4 != 0)
            throw new ArgumentException($"{name}: needs d_kv and the block a multiple of 16 and a quarter of the block's columns per invocation, got d_kv {shape.DKv}, {t}, subgroups of {subgroup}");
        if (t.SharedBytes(backward, shape.DKv, subgroup) > context.Capabilities.MaxComputeSharedMemorySize)
            throw new GpuException($"{name}: {t} at d_kv {shape.DKv} needs {t.SharedBytes(backward, shape.DKv, subgroup)} bytes of shared memory, the device has {context.Capabilities.MaxComputeSharedMemorySize}");
    }

    /// <summary>dq, dk and dv from the output gradient dO and the forward's q, k, v, o and
    /// logSumExp, with the forward's bias, mask, causality and dropout. Overwrites the gradients'
    /// first QueryLength / KeyLength rows of each batch entry and leaves the other rows as they are.
    /// Each query's Δ = dO·o is formed from o as stored, rounded where o is 16-bit; it then differs
    /// from Σ_j P·dP by that rounding, which is consistent: FusedAttentionReference.Backward given
    /// the same stored o forms the same Δ.</summary>
    public static void Backward(CommandGraph g, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp, GpuBuffer dO,
                                GpuBuffer dq, GpuBuffer dk, GpuBuffer dv, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask,
                                FusedAttentionShape shape, float dropoutRate = 0f, GpuBuffer? seed = null, uint stream = 0)
    {
        if (MatrixUnitsTiling(g.Context, shape.DKv, backward: true) is { } units)
            BackwardOnMatrixUnits(g, q, k, v, o, logSumExp, dO, dq, dk, dv, buckets, biasWeight, keyMask, shape, dropoutRate, seed, stream, units);
        else
            Backward(g, q, k, v, o, logSumExp, dO, dq, dk, dv, buckets, biasWeight, keyMask, shape, dropoutRate, seed, stream,
                     FusedAttentionTiling.For(g.Context.Plan, shape.DKv));
    }

    internal static void Backward(CommandGraph g, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp, GpuBuffer dO,
                                  GpuBuffer dq, GpuBuffer dk, GpuBuffer dv, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask,
                                  FusedAttentionShape shape, float dropoutRate, GpuBuffer? seed, uint stream, FusedAttentionTiling t)
    {
        const string name = "fused_attention_backward";
        var push = Check(name, g.Context.Capabilities, shape, buckets, biasWeight, keyMask, dropoutRate, seed, stream, t);
        if (!CheckBackwardBuffers(name, q, k, v, o, logSumExp, dO, dq, dk, dv, shape)) return;
        GpuBuffer[] inputs = [.. Optional(q, buckets, biasWeight, keyMask, seed), q, k, v, o, logSumExp, dO];
        var queryPass = PortableBackward.For(g.Context, Padded([.. t.Specialization(shape.DKv), 0]), q, k, v, o);
        g.Dispatch(queryPass, Groups(g, shape.Scores.QueryLength, shape, t.Invocations), push, [.. inputs, dq, dq]);
        var keyPass = PortableBackward.For(g.Context, Padded([.. t.Specialization(shape.DKv), 1]), q, k, v, o);
        g.Dispatch(keyPass, Groups(g, shape.Scores.KeyLength, shape, t.Invocations), push, [.. inputs, dk, dv]);
    }

    internal static void BackwardOnMatrixUnits(CommandGraph g, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp, GpuBuffer dO,
                                               GpuBuffer dq, GpuBuffer dk, GpuBuffer dv, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask,
                                               FusedAttentionShape shape, float dropoutRate, GpuBuffer? seed, uint stream, FusedAttentionMatrixUnitsTiling t)
    {
        var name = Shader(g.Context, BackwardOnUnits);
        var push = Check(name, g.Context.Capabilities, shape, buckets, biasWeight, keyMask, dropoutRate, seed, stream, null);
        CheckOnMatrixUnits(name, g.Context, shape, t, backward: true);
        if (!CheckBackwardBuffers(name, q, k, v, o, logSumExp, dO, dq, dk, dv, shape)) return;
        GpuBuffer[] inputs = [.. Optional(q, buckets, biasWeight, keyMask, seed), q, k, v, o, logSumExp, dO];
        int[] spec = t.Specialization(shape.DKv, (int)g.Context.Plan.FusedAttentionSubgroupSize);
        g.Dispatch(g.Context.MatrixUnitsKernel(name, BackwardHalfLayout, WithStorages([.. spec, 0], q, k, v, o)), Groups(g, shape.Scores.QueryLength, shape, 16 * t.Warps), push, [.. inputs, dq, dq]);
        g.Dispatch(g.Context.MatrixUnitsKernel(name, BackwardHalfLayout, WithStorages([.. spec, 1], q, k, v, o)), Groups(g, shape.Scores.KeyLength, shape, 16 * t.Warps), push, [.. inputs, dk, dv]);
    }

    /// <summary>Checks the forward's buffers; false where there is nothing to compute.</summary>
    static bool CheckForwardBuffers(string name, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp, FusedAttentionShape shape)
    {
        BufferChecks.Require(name, q, shape.QueryElements, "q [B, queryRows, H·dkv]");
        BufferChecks.Require(name, k, shape.KeyElements, "k [B, keyRows, H·dkv]");
        BufferChecks.Require(name, v, shape.KeyElements, "v [B, keyRows, H·dkv]");
        BufferChecks.Require(name, o, shape.QueryElements, "o [B, queryRows, H·dkv]");
        BufferChecks.Require(name, logSumExp, shape.Scores.Rows, "logSumExp [B, H, Lq]");
        return shape.Scores.Rows != 0;
    }

    /// <summary>Checks the backward's buffers; false where there is nothing to compute.</summary>
    static bool CheckBackwardBuffers(string name, GpuBuffer q, GpuBuffer k, GpuBuffer v, GpuBuffer o, GpuBuffer logSumExp, GpuBuffer dO,
                                     GpuBuffer dq, GpuBuffer dk, GpuBuffer dv, FusedAttentionShape shape)
    {
        foreach (var (buffer, what) in new[] { (q, "q"), (o, "o"), (dO, "dO"), (dq, "dq") })
            BufferChecks.Require(name, buffer, shape.QueryElements, what + " [B, queryRows, H·dkv]");
        foreach (var (buffer, what) in new[] { (k, "k"), (v, "v"), (dk, "dk"), (dv, "dv") })
            BufferChecks.Require(name, buffer, shape.KeyElements, what + " [B, keyRows, H·dkv]");
        BufferChecks.Require(name, logSumExp, shape.Scores.Rows, "logSumExp [B, H, Lq]");
        return shape.Scores.Rows != 0;
    }

    static Push Check(string name, DeviceCapabilities caps, FusedAttentionShape shape, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask,
                      float dropoutRate, GpuBuffer? seed, uint stream, FusedAttentionTiling? t)
    {
        var s = shape.Scores;
        BufferChecks.NonNegative(name, (s.Batch, nameof(s.Batch)), (s.Heads, nameof(s.Heads)), (s.QueryLength, nameof(s.QueryLength)));
        if (s.KeyLength <= 0) throw new ArgumentOutOfRangeException(nameof(shape), $"{name}: KeyLength must be positive, got {shape}");
        if (shape.DKv <= 0) throw new ArgumentOutOfRangeException(nameof(shape), $"{name}: DKv must be positive, got {shape}");
        if (shape.QueryRows < s.QueryLength || shape.KeyRows < s.KeyLength)
            throw new ArgumentOutOfRangeException(nameof(shape), $"{name}: QueryRows and KeyRows must hold QueryLength and KeyLength rows, got {shape}");
        var flags = AttentionInputs.Check(name, s, buckets, biasWeight, keyMask);
        uint threshold = DropoutKernel.KeepThreshold(dropoutRate);
        if (threshold != 0)
        {
            if (seed is null) throw new ArgumentException($"{name}: dropout needs a seed buffer");
            BufferChecks.Require(name, seed, 1, "seed");
            // Element indices of the probabilities are 32-bit, as DropoutKernel's are.
            if (s.Elements > uint.MaxValue) throw new ArgumentOutOfRangeException(nameof(shape), $"{name}: dropout indexes at most 2^32 probabilities, {shape} has {s.Elements}");
            flags |= AttentionOptions.Dropout;
        }
        if (t is { Staged: true, Block: var block } && FusedAttentionTiling.SharedBytes(block, shape.DKv) > caps.MaxComputeSharedMemorySize)
            throw new GpuException($"{name}: blocks of {block} rows of d_kv {shape.DKv} need {FusedAttentionTiling.SharedBytes(block, shape.DKv)} bytes of shared memory, the device has {caps.MaxComputeSharedMemorySize}");
        return new Push((uint)s.Batch, (uint)s.Heads, (uint)s.QueryLength, (uint)s.KeyLength, (uint)shape.QueryRows, (uint)shape.KeyRows,
                        flags, s.QueryOffset, threshold, threshold != 0 ? DropoutKernel.KeepScale(dropoutRate) : 1f, stream);
    }

    // Workgroups: blocks of rows along x, (b, h) along y up to the device limit (the shaders loop
    // over the rest).
    static (uint X, uint Y, uint Z) Groups(CommandGraph g, int rows, FusedAttentionShape shape, int rowsPerGroup) =>
        (Grid.Div(rows, rowsPerGroup), (uint)Math.Min((long)shape.Scores.Batch * shape.Scores.Heads, g.Context.Capabilities.MaxWorkGroupCountY), 1);

    // Bindings 0-3 are the optional inputs; an absent one is bound to q, which the shader never
    // reads through that binding with the flag off.
    static GpuBuffer[] Optional(GpuBuffer q, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask, GpuBuffer? seed) =>
        [buckets ?? q, biasWeight ?? q, keyMask ?? q, seed ?? q];
}
