namespace VkPrompt.Runtime.Kernels;

/// <summary>Workgroup and register-tile shape of matmul.comp: its specialization constants.
/// <paramref name="SharedK"/> 0 selects the streamed variant, &gt; 0 the shared-memory one
/// staging slices that deep.</summary>
internal readonly record struct MatMulTiling(int LocalX, int LocalY, int TileM, int TileN, int SharedK)
{
    public int BlockM => LocalY * TileM;
    public int BlockN => LocalX * TileN;

    // lavapipe runs a workgroup on one thread, 8 invocations to a 256-bit SIMD vector, so x
    // spans the vector. Sweeping 512³ A·Bᵀ and A·B on llvmpipe (LLVM 15, AVX2, 2 cores): 4x8 and
    // 8x4 register tiles beat 4x4 by 1.25x (more FMAs per lane-looped load) and 2x2 by 6x;
    // 8x8, 16x4 and 4x16 ran 4x slower (their arrays spill); the y extent (1, 2, 4) made no
    // difference; the staged variant ran 3.5x slower. 4 rows waste less than 8 would on the
    // few-token products of decoding.
    public static MatMulTiling Streamed => new(8, 2, 4, 8, 0);

    // A 64x64 block tile staged 16 deep, the mid-size shape GPU GEMMs (ggml-vulkan's among
    // them) settle on, from 16x8 invocations owning 4 columns x 8 rows each. It needs only what
    // Vulkan guarantees every device: 128 invocations and 8.3 KiB of the 16 KiB of shared
    // memory; 32 accumulators stay well inside a GPU invocation's registers.
    public static MatMulTiling Staged => new(16, 8, 8, 4, 16);

    public static MatMulTiling For(DeviceCapabilities caps) => caps.DeviceType == "cpu" ? Streamed : Staged;

    /// <summary>The tiling of <see cref="GpuOptions.MatMulTiling"/> where set, else the device's.</summary>
    public static MatMulTiling For(GpuContext context)
    {
        if (context.Options.MatMulTiling is not { } text) return For(context.Capabilities);
        var v = TilingText.Parse(text, "VKPROMPT_MATMUL_TILING", "LXxLYxTMxTNxBK, e.g. 16x8x8x4x16");
        var t = new MatMulTiling(v[0], v[1], v[2], v[3], v[4]);
        long shared = t.SharedK == 0 ? 0 : 4L * t.SharedK * (t.BlockM + 1 + t.BlockN + 1);
        if (v[0] < 1 || v[1] < 1 || v[2] < 1 || v[3] < 1 || v[4] < 0 || v[0] * v[1] > 1024 || shared > context.Capabilities.MaxComputeSharedMemorySize)
            throw new GpuException($"VKPROMPT_MATMUL_TILING={text}: needs positive sizes, at most 1024 invocations and {context.Capabilities.MaxComputeSharedMemorySize} bytes of shared memory ({shared} asked)");
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

    /// <summary>Shared memory the shader declares: fp16 A and B slices with rows padded by 8, and
    /// a 16x16 fp32 staging tile per subgroup.</summary>
    public long SharedBytes => 2L * (BlockM + BlockN) * (SharedK + 8) + 4L * 256 * WarpsM * WarpsN;

    // A 64x64 block from 4 subgroups of 32x32, 32 deep. On an H100 (t5-base step, batch 32 x
    // 612 tokens) it took 422 ms of products per step against 456-517 ms for 128x128 blocks from
    // 4 or 8 subgroups, 487 ms for 64x128 and 473 ms for 64 deep.
    public static CoopMatTiling Default => new(2, 2, 2, 2, 32);

    /// <summary>The tiling of <see cref="GpuOptions.CoopMatTiling"/> where set, else the default.</summary>
    public static CoopMatTiling For(GpuContext context)
    {
        if (context.Options.CoopMatTiling is not { } text) return Default;
        var v = TilingText.Parse(text, "VKPROMPT_COOPMAT_TILING", "WMxWNxTMxTNxBK, e.g. 2x2x4x4x32");
        var t = new CoopMatTiling(v[0], v[1], v[2], v[3], v[4]);
        long invocations = (long)t.WarpsM * t.WarpsN * context.Capabilities.SubgroupSize;
        if (v.Any(x => x < 1) || t.SharedK % 16 != 0 || invocations > 1024 || t.SharedBytes > context.Capabilities.MaxComputeSharedMemorySize)
            throw new GpuException($"VKPROMPT_COOPMAT_TILING={text}: needs positive sizes, a depth that is a multiple of 16, at most 1024 invocations " +
                                   $"({invocations} asked) and {context.Capabilities.MaxComputeSharedMemorySize} bytes of shared memory ({t.SharedBytes} asked)");
        return t;
    }
}

static class TilingText
{
    public static int[] Parse(string text, string name, string form)
    {
        var parts = text.Split('x');
        var values = new int[parts.Length];
        if (parts.Length != 5 || parts.Where((p, i) => !int.TryParse(p, out values[i])).Any())
            throw new GpuException($"{name}={text}: expected {form}");
        return values;
    }
}

/// <summary>The matrix product of <see cref="MatMulSpec"/> on the device.</summary>
public static class MatMulKernel
{
    // C is ReadWrite, not Write: an accumulating product reads it first.
    static readonly KernelLayout Layout = new([Access.Read, Access.Read, Access.ReadWrite], 84);

    readonly record struct Push(
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
    /// <remarks>Where the context uses cooperative matrices, a product with 16-bit B runs on the
    /// matrix units instead, with A rounded to fp16 (saturating at ±65504) and fp32 sums.</remarks>
    /// <exception cref="GpuException">B is 16-bit and the device lacks 16-bit storage.</exception>
    public static void Run(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, WeightPrecision bPrecision = WeightPrecision.Fp32)
    {
        if (bPrecision != WeightPrecision.Fp32 && g.Context.CooperativeMatrix)
            RunCoopMat(g, a, b, c, s, CoopMatTiling.For(g.Context), bPrecision);
        else
            Run(g, a, b, c, s, MatMulTiling.For(g.Context), bPrecision);
    }

    internal static void RunCoopMat(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, CoopMatTiling t, WeightPrecision bPrecision)
    {
        if (!g.Context.CooperativeMatrix) throw new GpuException("the cooperative-matrix product needs a context that enabled it (GpuContext.CooperativeMatrix)");
        if (bPrecision == WeightPrecision.Fp32) throw new ArgumentException("the cooperative-matrix product takes 16-bit weights only", nameof(bPrecision));
        s.Validate(a.Length<float>(), b.Bytes / bPrecision.ElementBytes(), c.Length<float>());
        uint subgroup = g.Context.Capabilities.SubgroupSize;
        var k = g.Context.Kernel("matmul_coopmat", Layout, (int)subgroup * t.WarpsM * t.WarpsN, (int)subgroup,
                                 t.WarpsM, t.WarpsN, t.TilesM, t.TilesN, t.SharedK, bPrecision == WeightPrecision.Bf16 ? 1 : 0,
                                 AlongK(s.AStrideK, Aligned(s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2), (s.M, s.AStrideM))),
                                 AlongK(s.BStrideK, Aligned(s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2), (s.N, s.BStrideN))));
        uint z = (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ);
        g.Dispatch(k, (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM), z), Push.From(s), a, b, c);
    }

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

    /// <summary>How the streamed variant fetches A and B: 0 one float at a time, 1 four
    /// consecutive k at once, 2 four consecutive rows of A (m) or columns of B (n) at once.</summary>
    /// <remarks>lavapipe turns every load whose address differs between invocations into a
    /// loop over the SIMD lanes, whatever its width, so a float4 load costs what a float load
    /// does; fetching four at a time roughly doubled 512³ throughput there. The float4 view
    /// needs every address it reads to be a multiple of 4 elements, and the m/n form needs
    /// whole groups of four rows/columns, which is what is checked here.</remarks>
    internal static (int A, int B) VectorLoads(in MatMulSpec s, MatMulTiling t)
    {
        if (t.SharedK != 0) return (0, 0);
        int a = 0, b = 0;
        if (s.AStrideK == 1 && Aligned(s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2), (s.M, s.AStrideM))) a = 1;
        else if (s.AStrideM == 1 && s.M % 4 == 0 && t.TileM % 4 == 0 && Aligned(s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2), (s.K, s.AStrideK))) a = 2;
        if (s.BStrideK == 1 && Aligned(s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2), (s.N, s.BStrideN))) b = 1;
        else if (s.BStrideN == 1 && s.N % 4 == 0 && t.TileN % 4 == 0 && Aligned(s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2), (s.K, s.BStrideK))) b = 2;
        return (a, b);
    }

    // matmul_coopmat.comp's A_ALONG_K / B_ALONG_K: 0 k strided, 1 k contiguous, 2 contiguous
    // rows that start on multiples of 4 elements (four k per fetch).
    static int AlongK(int strideK, bool alignedRows) => strideK != 1 ? 0 : alignedRows ? 2 : 1;

    static bool Aligned(int offset, params (int Size, int Stride)[] dims) =>
        offset % 4 == 0 && dims.All(d => d.Size == 1 || d.Stride % 4 == 0);

    /// <summary>The shader and tile shape (as the tiling variables spell it) that
    /// <see cref="Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision)"/>
    /// uses for <paramref name="s"/> on <paramref name="context"/>, e.g. ("matmul_half", "16x8x8x4x16"):
    /// what <c>vkprompt bench matmul</c> reports. Keep it in step with Run's choice.</summary>
    public static (string Kernel, string Tiling) Selection(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision = WeightPrecision.Fp32)
    {
        if (bPrecision != WeightPrecision.Fp32 && context.CooperativeMatrix)
        {
            var c = CoopMatTiling.For(context);
            return ("matmul_coopmat", $"{c.WarpsM}x{c.WarpsN}x{c.TilesM}x{c.TilesN}x{c.SharedK}");
        }
        var t = MatMulTiling.For(context);
        return (bPrecision == WeightPrecision.Fp32 ? "matmul" : "matmul_half", $"{t.LocalX}x{t.LocalY}x{t.TileM}x{t.TileN}x{t.SharedK}");
    }
}
