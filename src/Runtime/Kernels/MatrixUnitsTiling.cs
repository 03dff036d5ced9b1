namespace VkPrompt.Runtime.Kernels;

/// <summary>Tile shape of the matrix-unit product (matmul_coopmat*.comp): <paramref name="WarpsM"/> x <paramref name="WarpsN"/>
/// subgroups per workgroup, each owning <paramref name="TilesM"/> x <paramref name="TilesN"/>
/// 16x16 accumulators, over slices <paramref name="SharedK"/> deep.</summary>
internal readonly record struct MatrixUnitsTiling(int WarpsM, int WarpsN, int TilesM, int TilesN, int SharedK)
{
    public int BlockM => WarpsM * TilesM * 16;
    public int BlockN => WarpsN * TilesN * 16;

    /// <summary>Shared memory the shader declares: two fp16 slices of A and of B, each row padded
    /// by 8 halves and laid out along k or along m/n, whichever is the larger; A's at least as
    /// large as the 16x16 fp32 staging tile per subgroup it also holds.</summary>
    public long SharedBytes => Math.Max(2L * 2 * Slice(BlockM), 4L * 256 * WarpsM * WarpsN) + 2L * 2 * Slice(BlockN);

    long Slice(int rows) => Math.Max((long)rows * (SharedK + 8), (long)SharedK * (rows + 8));

    /// <summary>As <see cref="GpuOptions.MatrixUnitsTiling"/> writes it: WMxWNxTMxTNxBK.</summary>
    public string Text => $"{WarpsM}x{WarpsN}x{TilesM}x{TilesN}x{SharedK}";

    /// <summary>Whether the device runs a workgroup of these subgroups of <paramref name="subgroupSize"/>
    /// with this much shared memory.</summary>
    public bool Fits(DeviceCapabilities caps, uint subgroupSize) =>
        SharedBytes <= caps.MaxComputeSharedMemorySize && (long)WarpsM * WarpsN * subgroupSize <= caps.MaxComputeWorkGroupInvocations;

    /// <summary>Whether the context's device runs a workgroup of these subgroups with this much shared memory.</summary>
    public bool Fits(GpuContext context) => Fits(context.Capabilities, context.Plan.MatrixUnitsSubgroupSize);

    // 128x128 blocks from 8 subgroups of 32x64, 16 deep (24 KiB). On an H200 (KHR, 2026-11-27)
    // the tuner timed it fastest on every large product of a t5-base and a t5-large step, 25-30 %
    // ahead of the same blocks 32 deep (t5-large wi: 0.78 against 1.11 ms), which had been ahead
    // before the slice in flight was packed: the driver reported 146 registers an invocation 32
    // deep, too many for a second 256-invocation workgroup on a multiprocessor (64 Ki registers),
    // and the shallower slice holds half as many in flight (docs/benchmarks.md).
    public static MatrixUnitsTiling Default => new(4, 2, 2, 4, 16);

    // Default's blocks 32 deep (40 KiB): half the barriers per k, twice the registers in flight.
    public static MatrixUnitsTiling Deep => new(4, 2, 2, 4, 32);

    // For products too small to give 128x128 blocks to every multiprocessor (the decoder's few
    // tokens): 64x64 blocks, a quarter of the work per workgroup and four times the workgroups.
    // The tuner timed it fastest on every 256-row product of those steps.
    public static MatrixUnitsTiling Small => new(2, 2, 2, 2, 32);

    // 128x64 blocks for products 64 or fewer columns wide but many rows deep: attention per head
    // (P·V, dS·K, dV, dK with 64-wide heads) with every product on the matrix units (GpuOptions.MatrixUnitsAllProducts), where 128x128 blocks
    // would compute as many zero columns as real ones.
    public static MatrixUnitsTiling Narrow => new(4, 2, 2, 2, 16);

    // What a device with the 16 KiB minimum of shared memory can hold.
    internal static MatrixUnitsTiling Minimal => new(2, 2, 2, 2, 16);

    // One 16x16 accumulator a subgroup: the least code a pipeline compiles to, for CPU devices'
    // units (DevicePlan.MatrixUnitsProductTiling says why).
    internal static MatrixUnitsTiling OneTile => new(2, 2, 1, 1, 16);

    // The workgroup-scope kernel (matmul_coopmat_nv2.comp) takes from a tiling only its block,
    // BM x BN (WarpsM·TilesM·16 by WarpsN·TilesN·16), its depth BK and its workgroup of
    // WarpsM·WarpsN subgroups; the driver lays the block out over them. The shapes are
    // ggml-vulkan's for fp16 products on NVIDIA's workgroup scope (its large, medium and small
    // tiles, 64 deep), untimed here so far: 128x256 blocks from 256 invocations for wide
    // products, 128x128 for those at most 128 columns wide, 64x64 from 128 invocations where
    // larger blocks would leave multiprocessors idle, and 128x64 for 64-column products.
    public static MatrixUnitsTiling WorkgroupLarge => new(2, 4, 4, 4, 64);
    public static MatrixUnitsTiling WorkgroupMedium => new(2, 4, 4, 2, 64);
    public static MatrixUnitsTiling WorkgroupSmall => new(2, 2, 2, 2, 64);
    public static MatrixUnitsTiling WorkgroupNarrow => new(4, 2, 2, 2, 64);

    /// <summary>The tilings <see cref="MatMulTuner"/> times for a workgroup-scope product, where
    /// they fit: the four above and the large blocks 32 deep.</summary>
    public static IEnumerable<MatrixUnitsTiling> WorkgroupCandidates => [WorkgroupLarge, WorkgroupMedium, WorkgroupSmall, WorkgroupNarrow, new(2, 4, 4, 4, 32)];

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
    public static IEnumerable<MatrixUnitsTiling> Candidates => [Default, Deep, Small, Narrow, new(4, 4, 2, 2, 32)];

    /// <summary>The rule's tiling for a product at subgroup scope: <see cref="Small"/> where
    /// <see cref="Default"/> would make fewer than <see cref="FewBlocks"/> workgroups (about one per
    /// multiprocessor of a large GPU), <see cref="Narrow"/> for products 64 or fewer columns wide,
    /// and Default for the rest; where the device's shared memory lacks room for the one chosen,
    /// Small, else the least.</summary>
    internal static MatrixUnitsTiling ForSubgroupScope(DeviceCapabilities caps, in MatMulSpec s)
    {
        long limit = caps.MaxComputeSharedMemorySize;
        var t = (long)Grid.Div(s.M, Default.BlockM) * Grid.Div(s.N, Default.BlockN) < FewBlocks ? Small : s.N <= Narrow.BlockN ? Narrow : Default;
        if (t.SharedBytes <= limit) return t;
        return Small.SharedBytes <= limit ? Small : Minimal;
    }

    /// <summary>Fewer blocks than this take the small tiling: about one per multiprocessor of a large GPU.</summary>
    internal const long FewBlocks = 128;

    /// <summary>The workgroup-scope kernel's tiling for a product: <see cref="WorkgroupSmall"/>
    /// where 128x256 blocks would number fewer than 128, <see cref="WorkgroupNarrow"/> for products
    /// at most 64 columns wide, <see cref="WorkgroupMedium"/> up to 128, else
    /// <see cref="WorkgroupLarge"/>; the first of the candidates that fits where that one does not.</summary>
    internal static MatrixUnitsTiling ForWorkgroupScope(DeviceCapabilities caps, in MatMulSpec s)
    {
        var t = (long)Grid.Div(s.M, WorkgroupLarge.BlockM) * Grid.Div(s.N, WorkgroupLarge.BlockN) * s.Batch1 * s.Batch2 < FewBlocks ? WorkgroupSmall
            : s.N <= WorkgroupNarrow.BlockN ? WorkgroupNarrow
            : s.N <= WorkgroupMedium.BlockN ? WorkgroupMedium
            : WorkgroupLarge;
        return t.FitsWorkgroupScope(caps) ? t : WorkgroupCandidates.First(c => c.FitsWorkgroupScope(caps));
    }

    /// <summary><see cref="GpuOptions.MatrixUnitsTiling"/> for workgroup-scope products, checked
    /// against what VK_NV_cooperative_matrix2 lists.</summary>
    internal static MatrixUnitsTiling ParseWorkgroupScope(string text, DeviceCapabilities caps, GpuOptions options)
    {
        string setting = options.Describe(nameof(GpuOptions.MatrixUnitsTiling), text);
        var v = TilingText.Parse(text, setting, "WMxWNxTMxTNxBK, e.g. 2x4x4x4x64");
        var t = new MatrixUnitsTiling(v[0], v[1], v[2], v[3], v[4]);
        if (v.Any(x => x < 1) || !t.FitsWorkgroupScope(caps))
            throw new GpuException($"{setting}: the workgroup-scope kernel needs positive sizes, a workgroup and granularities VK_NV_cooperative_matrix2 lists " +
                                   $"({string.Join(", ", caps.CooperativeMatrix2Shapes.Select(s => $"{s.Invocations} invocations: {s.MGranularity}x{s.NGranularity}x{s.KGranularity}"))}) " +
                                   $"and dimensions up to {caps.CooperativeMatrix2MaxDimension}");
        return t;
    }

    /// <summary><see cref="GpuOptions.MatrixUnitsTiling"/> for products at subgroup scope, checked
    /// against the device for subgroups of <paramref name="subgroupSize"/>.</summary>
    internal static MatrixUnitsTiling ParseSubgroupScope(string text, DeviceCapabilities caps, uint subgroupSize, GpuOptions options)
    {
        string setting = options.Describe(nameof(GpuOptions.MatrixUnitsTiling), text);
        var v = TilingText.Parse(text, setting, "WMxWNxTMxTNxBK, e.g. 2x2x4x4x32");
        var t = new MatrixUnitsTiling(v[0], v[1], v[2], v[3], v[4]);
        long invocations = (long)t.WarpsM * t.WarpsN * subgroupSize;
        if (v.Any(x => x < 1) || t.SharedK % 16 != 0 || invocations > 1024 || t.SharedBytes > caps.MaxComputeSharedMemorySize)
            throw new GpuException($"{setting}: needs positive sizes, a depth that is a multiple of 16, at most 1024 invocations " +
                                   $"({invocations} asked) and {caps.MaxComputeSharedMemorySize} bytes of shared memory ({t.SharedBytes} asked)");
        return t;
    }
}
