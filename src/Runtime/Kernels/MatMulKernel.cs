namespace VkPrompt.Runtime.Kernels;

/// <summary>Workgroup and register-tile shape of matmul.comp: its specialization constants.
/// <paramref name="SharedK"/> 0 selects the streamed variant, &gt; 0 the shared-memory one
/// staging slices that deep.</summary>
internal readonly record struct MatMulTiling(int LocalX, int LocalY, int TileM, int TileN, int SharedK)
{
    public int BlockM => LocalY * TileM;
    public int BlockN => LocalX * TileN;

    /// <summary>Shared memory the staged variant declares: two fp32 slices of A and of B.</summary>
    public long SharedBytes => 2L * 4 * SharedK * (BlockM + BlockN);

    /// <summary>As VKPROMPT_MATMUL_TILING writes it: LXxLYxTMxTNxBK.</summary>
    public string Text => $"{LocalX}x{LocalY}x{TileM}x{TileN}x{SharedK}";

    /// <summary>Whether the device runs a workgroup this large with this much shared memory.</summary>
    public bool Fits(DeviceCapabilities caps) => SharedBytes <= caps.MaxComputeSharedMemorySize && (long)LocalX * LocalY <= caps.MaxComputeWorkGroupInvocations;

    // lavapipe runs a workgroup on one thread, 8 invocations to a 256-bit SIMD vector, so x
    // spans the vector. Sweeping 512³ A·Bᵀ and A·B on llvmpipe (LLVM 15, AVX2, 2 cores): 4x8 and
    // 8x4 register tiles beat 4x4 by 1.25x (more FMAs per lane-looped load) and 2x2 by 6x;
    // 8x8, 16x4 and 4x16 ran 4x slower (their arrays spill); the y extent (1, 2, 4) made no
    // difference; the staged variant ran 3.5x slower. 4 rows waste less than 8 would on the
    // few-token products of decoding.
    public static MatMulTiling Streamed => new(8, 2, 4, 8, 0);

    // The classic SIMT SGEMM shape (CUTLASS's 128x128x8, the "how to optimize a CUDA SGEMM"
    // kernels): 256 invocations owning 8x8 outputs each, 64 FMAs for every 16 floats read from
    // shared memory, 8 deep so that the double-buffered slices take exactly the 16 KiB every
    // Vulkan device has. 64 accumulators, the 16 operands of one k and the 8 floats of the next
    // slice in flight stay in registers.
    public static MatMulTiling Staged => new(16, 16, 8, 8, 8);

    // Staged 16 deep, where the device has the 32 KiB: half the barriers per k. On an H100 it ran
    // the t5-base step's large products (19584 rows by 768 or 2048) at 33-36 TFLOP/s against
    // Staged's 27-31.
    public static MatMulTiling StagedDeep => new(16, 16, 8, 8, 16);

    // 128x64 blocks from 8x16 invocations with 8x8 outputs, for products 64 or fewer columns
    // wide but many rows deep: attention per head (P·V, dK, dV with 64-wide heads). On the H100
    // they ran 1.4x faster than in 64x64 blocks, which waste nothing but read each A row twice
    // as often per output.
    public static MatMulTiling StagedNarrow => new(8, 16, 8, 8, 8);

    // A 64x64 block from 256 invocations owning 4x4 outputs, 16 deep (16 KiB again): four times
    // as many workgroups as Staged for the same product, for products too small to fill a GPU
    // with 128x128 tiles, at half Staged's FMAs per shared-memory read.
    public static MatMulTiling StagedSmall => new(16, 16, 4, 4, 16);

    // Vulkan does not say how many SMs or CUs a device has; 256 workgroups is about two per SM
    // of the largest GPUs (an H100 has 132 SMs). Fewer 128x128 blocks than that leave SMs idle
    // that four times as many 64x64 blocks would keep busy.
    const long LargeTilesWanted = 256;

    /// <summary>The GPU tiling for one product: <see cref="StagedSmall"/> where M is at most 64
    /// (the decoder's few-token products) or where 128x128 blocks would number fewer than the
    /// GPU has room for; <see cref="StagedNarrow"/> where N is at most 64 and M larger;
    /// otherwise <see cref="StagedDeep"/> where the device's shared memory holds it, else
    /// <see cref="Staged"/>. Together these took a t5-base training step's products on an H100
    /// from 342 ms (Staged and StagedSmall alone) to 285 ms (docs/benchmarks.md).</summary>
    public static MatMulTiling ForGpu(in MatMulSpec s, DeviceCapabilities caps)
    {
        if (s.M <= 64) return StagedSmall;
        if (s.N <= 64) return StagedNarrow;
        long largeTiles = (long)Grid.Div(s.M, Staged.BlockM) * Grid.Div(s.N, Staged.BlockN) * s.Batch1 * s.Batch2;
        if (largeTiles < LargeTilesWanted) return StagedSmall;
        return StagedDeep.SharedBytes <= caps.MaxComputeSharedMemorySize ? StagedDeep : Staged;
    }

    /// <summary>The tiling of <see cref="GpuOptions.MatMulTiling"/> where set, else the one
    /// <see cref="MatMulTuner"/> measured fastest for products like this one on this context,
    /// else the device's: <see cref="Streamed"/> on CPU devices, <see cref="ForGpu"/> elsewhere.</summary>
    public static MatMulTiling For(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision)
    {
        if (context.Options.MatMulTiling is { } text) return Parse(text, context.Capabilities);
        if (context.MatMulTunings.Find(s, bPrecision)?.Choice.Portable is { } tuned) return tuned;
        return context.Capabilities.DeviceType == "cpu" ? Streamed : ForGpu(s, context.Capabilities);
    }

    /// <summary>A tiling as VKPROMPT_MATMUL_TILING writes it, checked against what the device
    /// and the shader allow.</summary>
    public static MatMulTiling Parse(string text, DeviceCapabilities caps)
    {
        var v = TilingText.Parse(text, "VKPROMPT_MATMUL_TILING", "LXxLYxTMxTNxBK, e.g. 16x16x8x8x8");
        var t = new MatMulTiling(v[0], v[1], v[2], v[3], v[4]);
        long invocations = (long)t.LocalX * t.LocalY;
        if (v[0] < 1 || v[1] < 1 || v[2] < 1 || v[3] < 1 || v[4] < 0 || invocations > caps.MaxComputeWorkGroupInvocations || t.SharedBytes > caps.MaxComputeSharedMemorySize)
            throw new GpuException($"VKPROMPT_MATMUL_TILING={text}: needs positive sizes, at most {caps.MaxComputeWorkGroupInvocations} invocations ({invocations} asked) " +
                                   $"and {caps.MaxComputeSharedMemorySize} bytes of shared memory ({t.SharedBytes} asked)");
        // The staged variant reads and fills in vec4s: four rows, columns and k at a time.
        if (t.SharedK > 0 && (t.TileM % 4 != 0 || t.TileN % 4 != 0 || t.SharedK % 4 != 0))
            throw new GpuException($"VKPROMPT_MATMUL_TILING={text}: a staged tiling (BK > 0) needs TM, TN and BK that are multiples of 4");
        return t;
    }
}

/// <summary>Tile shape of matmul_coopmat.comp: <paramref name="WarpsM"/> x <paramref name="WarpsN"/>
/// subgroups per workgroup, each owning <paramref name="TilesM"/> x <paramref name="TilesN"/>
/// 16x16 accumulators, over slices <paramref name="SharedK"/> deep.</summary>
internal readonly record struct CoopMatTiling(int WarpsM, int WarpsN, int TilesM, int TilesN, int SharedK)
{
    public int BlockM => WarpsM * TilesM * 16;
    public int BlockN => WarpsN * TilesN * 16;

    /// <summary>Shared memory the shader declares: two fp16 slices of A and of B, each row padded
    /// by 8 halves and laid out along k or along m/n, whichever is the larger; A's at least as
    /// large as the 16x16 fp32 staging tile per subgroup it also holds.</summary>
    public long SharedBytes => Math.Max(2L * 2 * Slice(BlockM), 4L * 256 * WarpsM * WarpsN) + 2L * 2 * Slice(BlockN);

    long Slice(int rows) => Math.Max((long)rows * (SharedK + 8), (long)SharedK * (rows + 8));

    /// <summary>As VKPROMPT_COOPMAT_TILING writes it: WMxWNxTMxTNxBK.</summary>
    public string Text => $"{WarpsM}x{WarpsN}x{TilesM}x{TilesN}x{SharedK}";

    /// <summary>Whether the context's device runs a workgroup of these subgroups with this much shared memory.</summary>
    public bool Fits(GpuContext context) =>
        SharedBytes <= context.Capabilities.MaxComputeSharedMemorySize
        && (long)WarpsM * WarpsN * context.CoopMatSubgroupSize <= context.Capabilities.MaxComputeWorkGroupInvocations;

    // 128x128 blocks from 8 subgroups of 32x64, 16 deep (24 KiB). On an H200 (KHR, 2026-11-27)
    // the tuner timed it fastest on every large product of a t5-base and a t5-large step, 25-30 %
    // ahead of the same blocks 32 deep (t5-large wi: 0.78 against 1.11 ms), which had been ahead
    // before the slice in flight was packed: the driver reported 146 registers an invocation 32
    // deep, too many for a second 256-invocation workgroup on a multiprocessor (64 Ki registers),
    // and the shallower slice holds half as many in flight (docs/benchmarks.md).
    public static CoopMatTiling Default => new(4, 2, 2, 4, 16);

    // Default's blocks 32 deep (40 KiB): half the barriers per k, twice the registers in flight.
    public static CoopMatTiling Deep => new(4, 2, 2, 4, 32);

    // For products too small to give 128x128 blocks to every multiprocessor (the decoder's few
    // tokens): 64x64 blocks, a quarter of the work per workgroup and four times the workgroups.
    // The tuner timed it fastest on every 256-row product of those steps.
    public static CoopMatTiling Small => new(2, 2, 2, 2, 32);

    // 128x64 blocks for products 64 or fewer columns wide but many rows deep: attention per head
    // (P·V, dS·K, dV, dK with 64-wide heads) with VKPROMPT_COOPMAT=all, where 128x128 blocks
    // would compute as many zero columns as real ones.
    public static CoopMatTiling Narrow => new(4, 2, 2, 2, 16);

    // What a device with the 16 KiB minimum of shared memory can hold.
    static CoopMatTiling Minimal => new(2, 2, 2, 2, 16);

    // The workgroup-scope kernel (matmul_coopmat_nv2.comp) takes from a tiling only its block,
    // BM x BN (WarpsM·TilesM·16 by WarpsN·TilesN·16), its depth BK and its workgroup of
    // WarpsM·WarpsN subgroups; the driver lays the block out over them. The shapes are
    // ggml-vulkan's for fp16 products on NVIDIA's workgroup scope (its large, medium and small
    // tiles, 64 deep), untimed here so far: 128x256 blocks from 256 invocations for wide
    // products, 128x128 for those at most 128 columns wide, 64x64 from 128 invocations where
    // larger blocks would leave multiprocessors idle, and 128x64 for 64-column products.
    public static CoopMatTiling WorkgroupLarge => new(2, 4, 4, 4, 64);
    public static CoopMatTiling WorkgroupMedium => new(2, 4, 4, 2, 64);
    public static CoopMatTiling WorkgroupSmall => new(2, 2, 2, 2, 64);
    public static CoopMatTiling WorkgroupNarrow => new(4, 2, 2, 2, 64);

    /// <summary>The tilings <see cref="MatMulTuner"/> times for a workgroup-scope product, where
    /// they fit: the four above and the large blocks 32 deep.</summary>
    public static IEnumerable<CoopMatTiling> WorkgroupCandidates => [WorkgroupLarge, WorkgroupMedium, WorkgroupSmall, WorkgroupNarrow, new(2, 4, 4, 4, 32)];

    /// <summary>Whether the workgroup-scope kernel can run this tiling on <paramref name="caps"/>:
    /// VK_NV_cooperative_matrix2 lists fp16·fp16+fp32 at a workgroup of this many invocations with
    /// granularities that divide the block and its depth, and no dimension exceeds its largest.</summary>
    public bool FitsWorkgroupScope(DeviceCapabilities caps)
    {
        long invocations = (long)WarpsM * WarpsN * caps.SubgroupSize;
        int bm = BlockM, bn = BlockN, bk = SharedK;
        return Math.Max(Math.Max(bm, bn), bk) <= caps.CooperativeMatrix2MaxDimension
               && caps.CooperativeMatrix2Shapes.Any(s => s.Invocations == invocations && bm % s.MGranularity == 0 && bn % s.NGranularity == 0 && bk % s.KGranularity == 0);
    }

    /// <summary>Whether the product this tiling is for can run it: <see cref="FitsWorkgroupScope"/>
    /// for a workgroup-scope product, <see cref="Fits(GpuContext)"/> otherwise.</summary>
    public bool Fits(GpuContext context, bool workgroupScope) => workgroupScope ? FitsWorkgroupScope(context.Capabilities) : Fits(context);

    /// <summary>The tilings <see cref="MatMulTuner"/> times for a product on the matrix units,
    /// where they fit: the ones above and 16 subgroups of 32x32 in 128x128 blocks (512 invocations).</summary>
    public static IEnumerable<CoopMatTiling> Candidates => [Default, Deep, Small, Narrow, new(4, 4, 2, 2, 32)];

    /// <summary>The tiling for a product: <see cref="GpuOptions.CoopMatTiling"/> where set, else
    /// the one <see cref="MatMulTuner"/> measured fastest for products like this one on this
    /// context, else <see cref="Small"/> where <see cref="Default"/> would make fewer than 128
    /// workgroups (about one per multiprocessor of a large GPU), <see cref="Narrow"/> for products
    /// 64 or fewer columns wide, and Default for the rest; where the device's shared memory lacks
    /// room for the one chosen, Small, else the least.</summary>
    public static CoopMatTiling For(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision)
    {
        bool workgroupScope = MatMulKernel.OnWorkgroupScope(context, s, bPrecision);
        if (context.Options.CoopMatTiling is not null) return workgroupScope ? ForWorkgroupScope(context) : For(context);
        if (context.MatMulTunings.Find(s, bPrecision)?.Choice.MatrixUnits is { } tuned) return tuned;
        if (workgroupScope) return ForWorkgroupScope(context.Capabilities, s);
        long limit = context.Capabilities.MaxComputeSharedMemorySize;
        var t = (long)Grid.Div(s.M, Default.BlockM) * Grid.Div(s.N, Default.BlockN) < 128 ? Small : s.N <= Narrow.BlockN ? Narrow : Default;
        if (t.SharedBytes <= limit) return t;
        return Small.SharedBytes <= limit ? Small : Minimal;
    }

    /// <summary>The workgroup-scope kernel's tiling for a product: <see cref="WorkgroupSmall"/>
    /// where 128x256 blocks would number fewer than 128, <see cref="WorkgroupNarrow"/> for products
    /// at most 64 columns wide, <see cref="WorkgroupMedium"/> up to 128, else
    /// <see cref="WorkgroupLarge"/>; the first of the candidates that fits where that one does not.</summary>
    internal static CoopMatTiling ForWorkgroupScope(DeviceCapabilities caps, in MatMulSpec s)
    {
        var t = (long)Grid.Div(s.M, WorkgroupLarge.BlockM) * Grid.Div(s.N, WorkgroupLarge.BlockN) * s.Batch1 * s.Batch2 < 128 ? WorkgroupSmall
            : s.N <= WorkgroupNarrow.BlockN ? WorkgroupNarrow
            : s.N <= WorkgroupMedium.BlockN ? WorkgroupMedium
            : WorkgroupLarge;
        return t.FitsWorkgroupScope(caps) ? t : WorkgroupCandidates.First(c => c.FitsWorkgroupScope(caps));
    }

    /// <summary><see cref="GpuOptions.CoopMatTiling"/> for workgroup-scope products, checked
    /// against what VK_NV_cooperative_matrix2 lists (products the KHR kernel runs on such a
    /// context keep their own tilings).</summary>
    static CoopMatTiling ForWorkgroupScope(GpuContext context)
    {
        var text = context.Options.CoopMatTiling!;
        var v = TilingText.Parse(text, "VKPROMPT_COOPMAT_TILING", "WMxWNxTMxTNxBK, e.g. 2x4x4x4x64");
        var t = new CoopMatTiling(v[0], v[1], v[2], v[3], v[4]);
        if (v.Any(x => x < 1) || !t.FitsWorkgroupScope(context.Capabilities))
            throw new GpuException($"VKPROMPT_COOPMAT_TILING={text}: the workgroup-scope kernel needs positive sizes, a workgroup and granularities VK_NV_cooperative_matrix2 lists " +
                                   $"({string.Join(", ", context.Capabilities.CooperativeMatrix2Shapes.Select(s => $"{s.Invocations} invocations: {s.MGranularity}x{s.NGranularity}x{s.KGranularity}"))}) " +
                                   $"and dimensions up to {context.Capabilities.CooperativeMatrix2MaxDimension}");
        return t;
    }

    /// <summary>The tiling of <see cref="GpuOptions.CoopMatTiling"/> where set, else the default.</summary>
    public static CoopMatTiling For(GpuContext context)
    {
        if (context.Options.CoopMatTiling is not { } text) return Default;
        var v = TilingText.Parse(text, "VKPROMPT_COOPMAT_TILING", "WMxWNxTMxTNxBK, e.g. 2x2x4x4x32");
        var t = new CoopMatTiling(v[0], v[1], v[2], v[3], v[4]);
        long invocations = (long)t.WarpsM * t.WarpsN * context.CoopMatSubgroupSize;
        if (v.Any(x => x < 1) || t.SharedK % 16 != 0 || invocations > 1024 || t.SharedBytes > context.Capabilities.MaxComputeSharedMemorySize)
            throw new GpuException($"VKPROMPT_COOPMAT_TILING={text}: needs positive sizes, a depth that is a multiple of 16, at most 1024 invocations " +
                                   $"({invocations} asked) and {context.Capabilities.MaxComputeSharedMemorySize} bytes of shared memory ({t.SharedBytes} asked)");
        return t;
    }
}

static class TilingText
{
    /// <summary>The <paramref name="count"/> sizes of a tiling written as AxBx..., or a
    /// GpuException naming the variable <paramref name="name"/> and the <paramref name="form"/> expected.</summary>
    public static int[] Parse(string text, string name, string form, int count = 5)
    {
        var parts = text.Split('x');
        var values = new int[parts.Length];
        if (parts.Length != count || parts.Where((p, i) => !int.TryParse(p, out values[i])).Any())
            throw new GpuException($"{name}={text}: expected {form}");
        return values;
    }
}

/// <summary>The matrix product of <see cref="MatMulSpec"/> on the device.</summary>
public static class MatMulKernel
{
    // C is ReadWrite, not Write: an accumulating product reads it first.
    static readonly KernelLayout Layout = new([Access.Read, Access.Read, Access.ReadWrite], 84);

    // shaders/include/matmul_push.glsl, the block every product kernel declares, field for field
    // (MatMulPushTests compares them).
    internal readonly record struct Push(
        uint M, uint N, uint K, uint Batch1, uint Batch2,
        uint AOffset, uint AStrideBatch1, uint AStrideBatch2, uint AStrideM, uint AStrideK,
        uint BOffset, uint BStrideBatch1, uint BStrideBatch2, uint BStrideK, uint BStrideN,
        uint COffset, uint CStrideBatch1, uint CStrideBatch2, uint CStrideM,
        float Alpha, uint Accumulate)
    {
        public static Push From(in MatMulSpec s) => new(
            (uint)s.M, (uint)s.N, (uint)s.K, (uint)s.Batch1, (uint)s.Batch2,
            (uint)s.AOffset, (uint)s.AStrideBatch1, (uint)s.AStrideBatch2, (uint)s.AStrideM, (uint)s.AStrideK,
            (uint)s.BOffset, (uint)s.BStrideBatch1, (uint)s.BStrideBatch2, (uint)s.BStrideK, (uint)s.BStrideN,
            (uint)s.COffset, (uint)s.CStrideBatch1, (uint)s.CStrideBatch2, (uint)s.CStrideM,
            s.Alpha, s.Accumulate ? 1u : 0u);
    }

    /// <summary>Appends C = Alpha·A·B (+ C) as described by <paramref name="s"/>, after checking
    /// it against the buffers' lengths. A and B may be the same buffer; C must not overlap the
    /// ranges of A or B it is computed from. B, the frozen weight of a layer, may be stored as
    /// fp16 or bf16 halves (<paramref name="bPrecision"/>; offsets and strides still count
    /// elements); it is widened to fp32 as it is loaded, and A, C and the sums stay fp32.</summary>
    /// <remarks>Where the context uses cooperative matrices, a product with 16-bit B (any B with
    /// <see cref="GpuOptions.CooperativeMatrixAllProducts"/>) runs on the matrix units instead,
    /// with A and an fp32 B rounded to fp16 (saturating at ±65504) and fp32 sums.</remarks>
    /// <exception cref="GpuException">B is 16-bit and the device lacks 16-bit storage.</exception>
    public static void Run(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, WeightPrecision bPrecision = WeightPrecision.Fp32) =>
        Choose(g.Context, s, bPrecision).Append(g, a, b, c, s, bPrecision);

    /// <summary>The kernel and tiling <see cref="Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision)"/>
    /// and <see cref="Selection"/> use: the matrix units where the context uses them for this B,
    /// else the portable product, each with the tiling its <c>For</c> gives.</summary>
    internal static MatMulChoice Choose(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision) =>
        OnMatrixUnits(context, bPrecision)
            ? new(CoopMatTiling.For(context, s, bPrecision), OnWorkgroupScope(context, s, bPrecision))
            : new(MatMulTiling.For(context, s, bPrecision));

    /// <summary>The product on the matrix units (or their emulation) with tiling <paramref name="t"/>.
    /// <paramref name="halfA"/>, <paramref name="halfB"/>: whether it reads a 16-bit copy of A, or
    /// of an fp32 B, made first (<see cref="HalfCopies"/>), rather than the operand itself; null
    /// leaves it to <see cref="HalvesA"/> and <see cref="HalvesB"/>.</summary>
    internal static void RunCoopMat(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, CoopMatTiling t, WeightPrecision bPrecision,
                                    bool? halfA = null, bool? halfB = null)
    {
        if (!g.Context.CooperativeMatrix) throw new GpuException("the cooperative-matrix product needs a context that enabled it (GpuContext.CooperativeMatrix)");
        s.Validate(a.Length<float>(), b.Bytes / bPrecision.ElementBytes(), c.Length<float>());
        var spec = s;
        var (aExtent, bExtent, _) = s.Extents();
        // The workgroup-scope kernel multiplies what it loads, so both its operands are fp16 copies
        // (of A always, of an fp32 B) whatever the switches ask of the other kernel.
        bool workgroupScope = OnWorkgroupScope(g.Context, s, bPrecision);
        bool copyA = workgroupScope ? Used(s) > 0 : halfA ?? HalvesA(g.Context.Options, s);
        if (copyA)
        {
            a = g.State<HalfCopies>().Of(g, HalfCopies.Operand.A, a, s.AOffset, aExtent - s.AOffset);
            spec = spec with { AOffset = 0 };
        }
        if (bPrecision == WeightPrecision.Fp32 && (workgroupScope ? Used(s) > 0 : halfB ?? HalvesB(g.Context.Options, s)))
        {
            b = g.State<HalfCopies>().Of(g, HalfCopies.Operand.B, b, s.BOffset, bExtent - s.BOffset);
            spec = spec with { BOffset = 0 };
            bPrecision = WeightPrecision.Fp16;
        }
        if (workgroupScope) AppendWorkgroupScope(g, a, b, c, spec, t);
        else AppendCoopMat(g, a, b, c, spec, t, bPrecision, aHalf: copyA);
    }

    /// <summary>Whether a matrix-unit product runs the workgroup-scope kernel
    /// (matmul_coopmat_nv2.comp): on a context using VK_NV_cooperative_matrix2, where each operand
    /// is contiguous along one of its indices (tensor addressing needs a unit stride) and B is
    /// fp16, or fp32 to be copied to fp16. A bf16 B (VKPROMPT_COOPMAT_FP16_WEIGHTS=0) and operands
    /// strided both ways run the KHR kernel.</summary>
    internal static bool OnWorkgroupScope(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision) => OnWorkgroupScope(context.MatrixUnits, s, bPrecision);

    internal static bool OnWorkgroupScope(MatrixUnits units, in MatMulSpec s, WeightPrecision bPrecision) =>
        units == MatrixUnits.Nv2 && bPrecision != WeightPrecision.Bf16
        && (s.AStrideK == 1 || s.AStrideM == 1) && (s.BStrideK == 1 || s.BStrideN == 1);

    static void AppendWorkgroupScope(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, CoopMatTiling t)
    {
        var k = g.Context.Kernel(GpuContext.Nv2MatMulShader, Layout, (int)g.Context.Capabilities.SubgroupSize * t.WarpsM * t.WarpsN,
                                 t.BlockM, t.BlockN, t.SharedK, s.AStrideK == 1 ? 1 : 0, s.BStrideK == 1 ? 1 : 0);
        uint z = (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ);
        g.Dispatch(k, (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM), z), Push.From(s), a, b, c);
    }

    static void AppendCoopMat(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, CoopMatTiling t, WeightPrecision bPrecision, bool aHalf)
    {
        uint subgroup = g.Context.CoopMatSubgroupSize;
        var k = g.Context.Kernel(CoopMatShader(g.Context), Layout, (int)subgroup * t.WarpsM * t.WarpsN, (int)subgroup,
                                 t.WarpsM, t.WarpsN, t.TilesM, t.TilesN, t.SharedK, bPrecision == WeightPrecision.Bf16 ? 1 : 0,
                                 Fetch(s.AStrideK, (s.M, s.AStrideM), (s.K, s.AStrideK), s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2)),
                                 Fetch(s.BStrideK, (s.N, s.BStrideN), (s.K, s.BStrideK), s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2)),
                                 Aligned(s.COffset, (s.Batch1, s.CStrideBatch1), (s.Batch2, s.CStrideBatch2), (s.M, s.CStrideM)) ? 1 : 0,
                                 bPrecision == WeightPrecision.Fp32 ? 1 : 0, aHalf ? 1 : 0);
        uint z = (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ);
        g.Dispatch(k, (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM), z), Push.From(s), a, b, c);
    }

    // A copy costs about 6 bytes moved per element of its operand, the product 2·N flops per
    // element of A (2·M per element of B): at 256 and an H100's rates (3 TB/s, a few hundred
    // TFLOP/s on the matrix units) a copy used once costs a fifth to a third of the product it
    // serves. Below that are the per-head attention products' operands that meet d_kv (64):
    // there a copy would cost as much as the product.
    const int HalfCopyMinOther = 256;

    /// <summary>Whether a matrix-unit product reads a 16-bit copy of its fp32 A: where
    /// <see cref="GpuOptions.CooperativeMatrixHalfActivations"/> asks for it, the product is at
    /// least 256 columns wide, and the range A spans is at most twice the elements it uses (a
    /// strided view would convert what it skips).</summary>
    internal static bool HalvesA(GpuOptions options, in MatMulSpec s) =>
        options.CooperativeMatrixHalfActivations && s.N >= HalfCopyMinOther && Used(s) > 0
        && s.Extents().A - s.AOffset <= 2L * s.M * s.K * s.Batch1 * s.Batch2;

    /// <summary>The same for an fp32 B (the products of two activations that
    /// <see cref="GpuOptions.CooperativeMatrixAllProducts"/> puts on the matrix units), at least
    /// 256 rows deep.</summary>
    internal static bool HalvesB(GpuOptions options, in MatMulSpec s) =>
        options.CooperativeMatrixHalfActivations && s.M >= HalfCopyMinOther && Used(s) > 0
        && s.Extents().B - s.BOffset <= 2L * s.N * s.K * s.Batch1 * s.Batch2;

    // Multiply-adds the product makes: none (nothing to copy for) where any size is 0.
    static long Used(in MatMulSpec s) => (long)s.M * s.N * s.K * s.Batch1 * s.Batch2;

    internal static void Run(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, MatMulTiling t,
                             WeightPrecision bPrecision = WeightPrecision.Fp32)
    {
        bPrecision.Require(g.Context.Capabilities);
        s.Validate(a.Length<float>(), b.Bytes / bPrecision.ElementBytes(), c.Length<float>());
        var (aVec, bVec) = VectorLoads(s, t);
        // The vec4 views index whole groups of four elements, whatever their width, so the
        // alignment VectorLoads checks holds for halves too.
        var k = bPrecision == WeightPrecision.Fp32
            ? g.Context.Kernel("matmul", Layout, t.LocalX, t.LocalY, t.TileM, t.TileN, t.SharedK, aVec, bVec)
            : g.Context.Kernel("matmul_half", Layout, t.LocalX, t.LocalY, t.TileM, t.TileN, t.SharedK, aVec, bVec,
                               bPrecision == WeightPrecision.Bf16 ? 1 : 0);
        // Batches past the device's z limit are looped over inside the shader.
        uint z = (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ);
        g.Dispatch(k, (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM), z), Push.From(s), a, b, c);
    }

    /// <summary>How matmul.comp fetches A and B (A_VEC, B_VEC): 0 one float at a time, 1 four
    /// consecutive k at once, 2 four consecutive rows of A (m) or columns of B (n) at once.</summary>
    /// <remarks>The float4 view needs every address it reads to be a multiple of 4 elements,
    /// which is what is checked here. On lavapipe, which turns every load whose address differs
    /// between invocations into a loop over the SIMD lanes whatever its width, fetching four at a
    /// time roughly doubled the streamed variant's 512³ throughput; that variant clamps rows and
    /// columns past the edge to the last whole group of four, so its m/n form needs whole groups.
    /// The staged variant fetches the groups that straddle an edge element by element, and on a
    /// GPU a float4 load moves four times the bytes of a float load for the same instruction.</remarks>
    internal static (int A, int B) VectorLoads(in MatMulSpec s, MatMulTiling t)
    {
        bool staged = t.SharedK != 0;
        int a = 0, b = 0;
        if (s.AStrideK == 1 && Aligned(s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2), (s.M, s.AStrideM))) a = 1;
        else if (s.AStrideM == 1 && (staged || s.M % 4 == 0 && t.TileM % 4 == 0) && Aligned(s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2), (s.K, s.AStrideK))) a = 2;
        if (s.BStrideK == 1 && Aligned(s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2), (s.N, s.BStrideN))) b = 1;
        else if (s.BStrideN == 1 && (staged || s.N % 4 == 0 && t.TileN % 4 == 0) && Aligned(s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2), (s.K, s.BStrideK))) b = 2;
        return (a, b);
    }

    // matmul_coopmat.comp's A_FETCH / B_FETCH for an operand with strides along k and along m
    // (or n): 1 contiguous along k, 2 contiguous along m/n, 0 neither; 3 and 4 as 1 and 2 where,
    // besides, every run of four starts on a multiple of 4 elements (one vector load each).
    static int Fetch(int strideK, (int Size, int Stride) mn, (int Size, int Stride) k, int offset, (int, int) batch1, (int, int) batch2)
    {
        if (strideK == 1) return Aligned(offset, batch1, batch2, mn) ? 3 : 1;
        if (mn.Stride == 1) return Aligned(offset, batch1, batch2, k) ? 4 : 2;
        return 0;
    }

    internal static bool Aligned(int offset, params (int Size, int Stride)[] dims) =>
        offset % 4 == 0 && dims.All(d => d.Size == 1 || d.Stride % 4 == 0);

    /// <summary>The shader and tile shape (as the tiling variables spell it) that
    /// <see cref="Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision)"/>
    /// uses for <paramref name="s"/> on <paramref name="context"/>, e.g. ("matmul_half", "16x16x8x8x8"):
    /// what <c>vkprompt bench matmul</c> reports, from the same choices Run makes.</summary>
    public static (string Kernel, string Tiling) Selection(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision = WeightPrecision.Fp32)
    {
        var choice = Choose(context, s, bPrecision);
        return (choice.Kernel(context, bPrecision), choice.Tiling);
    }

    /// <summary>Whether a product whose B is stored as <paramref name="bPrecision"/> runs on the
    /// matrix units: where the context uses them, if B is 16-bit, or whatever B is with
    /// <see cref="GpuOptions.CooperativeMatrixAllProducts"/>.</summary>
    internal static bool OnMatrixUnits(GpuContext context, WeightPrecision bPrecision) =>
        context.CooperativeMatrix && (bPrecision != WeightPrecision.Fp32 || context.Options.CooperativeMatrixAllProducts);

    /// <summary>How a frozen weight asked for as <paramref name="requested"/> is stored on
    /// <paramref name="context"/>: bf16 as fp16 where the matrix units run the products that read
    /// it and <see cref="GpuOptions.CooperativeMatrixFp16Weights"/> allows, else as asked. The
    /// units multiply fp16, so the kernel would otherwise convert every bf16 weight it stages, in
    /// every tile of every product; converted once on upload
    /// (<see cref="HalfFloat.EncodeBf16AsFp16"/>, with the kernel's rounding and saturation) the
    /// products give the same results. An embedding table that is only gathered from is stored
    /// the same way: the values differ from bf16 only below fp16's normal range (by less than
    /// 3e-8) and beyond ±65504.</summary>
    public static WeightPrecision StoredPrecision(GpuContext context, WeightPrecision requested) =>
        requested == WeightPrecision.Bf16 && OnMatrixUnits(context, requested) && context.Options.CooperativeMatrixFp16Weights ? WeightPrecision.Fp16 : requested;

    /// <summary>The build of a cooperative-matrix shader (shaders/NAME.comp for NV, NAME_khr.comp,
    /// NAME_emulated.comp) that the context's <see cref="GpuContext.MatrixUnits"/> runs at subgroup scope.
    /// A context through VK_NV_cooperative_matrix2 runs the KHR builds beside its workgroup-scope kernel.</summary>
    internal static string CoopMatShader(GpuContext context, string name = "matmul_coopmat") => context.MatrixUnits switch
    {
        MatrixUnits.Emulated => name + "_emulated",
        MatrixUnits.Khr or MatrixUnits.Nv2 => name + "_khr",
        _ => name,
    };

    /// <summary>Whether <paramref name="kernel"/>, as <see cref="Selection"/> names it, is a
    /// cooperative-matrix product (on the matrix units or emulated), which rounds A to fp16.</summary>
    public static bool IsCooperativeMatrix(string kernel) =>
        kernel is "matmul_coopmat" or GpuContext.KhrMatMulShader or GpuContext.Nv2MatMulShader or "matmul_coopmat_emulated";
}

/// <summary>A product's kernel and its tile shape: the portable product's (<see cref="Portable"/>)
/// or the matrix units' (<see cref="MatrixUnits"/>), exactly one of them set.</summary>
internal readonly record struct MatMulChoice
{
    public MatMulTiling? Portable { get; }
    public CoopMatTiling? MatrixUnits { get; }

    /// <summary>The matrix units' tiling is for the workgroup-scope kernel (matmul_coopmat_nv2.comp).</summary>
    public bool WorkgroupScope { get; }

    public MatMulChoice(MatMulTiling portable) => Portable = portable;
    public MatMulChoice(CoopMatTiling matrixUnits, bool workgroupScope = false) => (MatrixUnits, WorkgroupScope) = (matrixUnits, workgroupScope);

    /// <summary>The shader that runs, as a profile labels its dispatches.</summary>
    public string Kernel(GpuContext context, WeightPrecision bPrecision) =>
        WorkgroupScope ? GpuContext.Nv2MatMulShader
        : MatrixUnits is not null ? MatMulKernel.CoopMatShader(context) : bPrecision == WeightPrecision.Fp32 ? "matmul" : "matmul_half";

    /// <summary>The tile shape as the tiling variables spell it.</summary>
    public string Tiling => MatrixUnits?.Text ?? Portable!.Value.Text;

    /// <summary>Appends the product with this kernel and tiling.</summary>
    public void Append(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, WeightPrecision bPrecision)
    {
        if (MatrixUnits is { } m) MatMulKernel.RunCoopMat(g, a, b, c, s, m, bPrecision);
        else MatMulKernel.Run(g, a, b, c, s, Portable!.Value, bPrecision);
    }
}
