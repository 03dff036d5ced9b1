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

    /// <summary>As <see cref="GpuOptions.MatMulTiling"/> writes it: LXxLYxTMxTNxBK.</summary>
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
    internal const long LargeTilesWanted = 256;

    /// <summary>Products with at most this many rows (the decoder's few tokens) take <see cref="StagedSmall"/>,
    /// and with at most this many columns <see cref="StagedNarrow"/>.</summary>
    internal const int FewRows = 64, FewColumns = 64;

    /// <summary>The tiling of large products on a GPU: <see cref="StagedDeep"/> where the device's
    /// shared memory holds it, else <see cref="Staged"/>.</summary>
    internal static MatMulTiling GpuDefault(DeviceCapabilities caps) => StagedDeep.SharedBytes <= caps.MaxComputeSharedMemorySize ? StagedDeep : Staged;

    /// <summary>The name of a tiling above, else its text.</summary>
    internal static string NameOf(MatMulTiling t) =>
        t == Streamed ? nameof(Streamed) : t == Staged ? nameof(Staged) : t == StagedDeep ? nameof(StagedDeep)
        : t == StagedNarrow ? nameof(StagedNarrow) : t == StagedSmall ? nameof(StagedSmall) : t.Text;

    /// <summary>The GPU tiling for one product: <see cref="StagedSmall"/> where M is at most 64
    /// (the decoder's few-token products) or where 128x128 blocks would number fewer than the
    /// GPU has room for; <see cref="StagedNarrow"/> where N is at most 64 and M larger;
    /// otherwise <see cref="StagedDeep"/> where the device's shared memory holds it, else
    /// <see cref="Staged"/>. Together these took a t5-base training step's products on an H100
    /// from 342 ms (Staged and StagedSmall alone) to 285 ms (docs/benchmarks.md).</summary>
    public static MatMulTiling ForGpu(in MatMulSpec s, DeviceCapabilities caps)
    {
        if (s.M <= FewRows) return StagedSmall;
        if (s.N <= FewColumns) return StagedNarrow;
        long largeTiles = (long)Grid.Div(s.M, Staged.BlockM) * Grid.Div(s.N, Staged.BlockN) * s.Batch1 * s.Batch2;
        if (largeTiles < LargeTilesWanted) return StagedSmall;
        return GpuDefault(caps);
    }

    /// <summary>A tiling as <see cref="GpuOptions.MatMulTiling"/> writes it, checked against what
    /// the device and the shader allow; errors name it as <paramref name="options"/> says.</summary>
    public static MatMulTiling Parse(string text, DeviceCapabilities caps, GpuOptions options)
    {
        string setting = options.Describe(nameof(GpuOptions.MatMulTiling), text);
        var v = TilingText.Parse(text, setting, "LXxLYxTMxTNxBK, e.g. 16x16x8x8x8");
        var t = new MatMulTiling(v[0], v[1], v[2], v[3], v[4]);
        long invocations = (long)t.LocalX * t.LocalY;
        if (v[0] < 1 || v[1] < 1 || v[2] < 1 || v[3] < 1 || v[4] < 0 || invocations > caps.MaxComputeWorkGroupInvocations || t.SharedBytes > caps.MaxComputeSharedMemorySize)
            throw new GpuException($"{setting}: needs positive sizes, at most {caps.MaxComputeWorkGroupInvocations} invocations ({invocations} asked) " +
                                   $"and {caps.MaxComputeSharedMemorySize} bytes of shared memory ({t.SharedBytes} asked)");
        // The staged variant reads and fills in vec4s: four rows, columns and k at a time.
        if (t.SharedK > 0 && (t.TileM % 4 != 0 || t.TileN % 4 != 0 || t.SharedK % 4 != 0))
            throw new GpuException($"{setting}: a staged tiling (BK > 0) needs TM, TN and BK that are multiples of 4");
        return t;
    }
}

static class TilingText
{
    /// <summary>The <paramref name="count"/> sizes of a tiling written as AxBx..., or a
    /// GpuException naming the <paramref name="setting"/> (<see cref="GpuOptions.Describe"/>) and
    /// the <paramref name="form"/> expected.</summary>
    public static int[] Parse(string text, string setting, string form, int count = 5)
    {
        var parts = text.Split('x');
        var values = new int[parts.Length];
        if (parts.Length != count || parts.Where((p, i) => !int.TryParse(p, out values[i])).Any())
            throw new GpuException($"{setting}: expected {form}");
        return values;
    }
}
