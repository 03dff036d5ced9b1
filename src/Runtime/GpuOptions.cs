namespace VkPrompt.Runtime;

/// <summary>How a <see cref="GpuContext"/> is created. Every field has a default that reads the
/// documented environment variable, so a CLI flag and an environment variable behave alike.</summary>
public sealed record GpuOptions
{
    /// <summary>"auto" (discrete &gt; integrated &gt; virtual &gt; CPU), a device index, or a name substring.</summary>
    public string Device { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_DEVICE") is { Length: > 0 } d ? d : "auto";

    /// <summary>Enables VK_LAYER_KHRONOS_validation with synchronization validation.</summary>
    public bool Validation { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_VALIDATION") == "1";

    /// <summary>Records a timestamp around every dispatch (see <see cref="CommandGraph.Timings"/>).</summary>
    public bool Profiling { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_PROFILE") == "1";

    /// <summary>Runs products with fp16/bf16 weights on the matrix units where the device has
    /// them (<see cref="GpuContext.MatrixUnits"/>), through <see cref="CooperativeMatrixExtension"/>,
    /// their activation operand rounded to fp16. On unless VKPROMPT_COOPMAT=0 or
    /// VKPROMPT_DISABLE_COOPMAT=1: on an H100 they ran a t5-base step's products in 199 ms against
    /// 345 ms for the portable product with bf16 weights (docs/benchmarks.md).</summary>
    public bool CooperativeMatrix { get; init; } =
        !CoopmatWords.Overlaps(["0", "emulate"]) && Environment.GetEnvironmentVariable("VKPROMPT_DISABLE_COOPMAT") != "1";

    /// <summary>VKPROMPT_COOPMAT's comma-separated words ("nv2,all" takes both), in lower case.</summary>
    static HashSet<string> CoopmatWords => Words(Environment.GetEnvironmentVariable("VKPROMPT_COOPMAT"));

    static HashSet<string> Words(string? value) =>
        (value ?? "").ToLowerInvariant().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();

    static readonly string[] KnownCoopmatWords = ["0", "1", "khr", "nv", "nv2", "all", "emulate"];

    /// <summary>Throws where VKPROMPT_COOPMAT (or <paramref name="value"/>) holds a word it does not
    /// know (a typo would otherwise silently run the defaults), or names two extensions.</summary>
    internal static void CheckCoopmatVariable(string? value = null)
    {
        value ??= Environment.GetEnvironmentVariable("VKPROMPT_COOPMAT");
        var words = Words(value);
        var unknown = words.Except(KnownCoopmatWords).ToList();
        if (unknown.Count > 0 || words.Intersect(["khr", "nv", "nv2"]).Count() > 1)
            throw new GpuException($"VKPROMPT_COOPMAT={value}: " +
                                   (unknown.Count > 0 ? $"unknown value '{unknown[0]}'" : "names more than one extension") +
                                   $"; expected one of {string.Join(", ", KnownCoopmatWords)}, or an extension and all, e.g. nv2,all");
    }

    /// <summary>Every product runs on the matrix units where <see cref="CooperativeMatrix"/> puts
    /// any there, those whose operands are both fp32 activations (attention's) too, rounded to
    /// fp16 like the others' activations: the nearest to a peer that computes everything in bf16.
    /// Off unless VKPROMPT_COOPMAT has all (alone it asks for the matrix units as 1 does; nv2,all
    /// puts every product on the workgroup-scope kernel): on an H200 it
    /// took a t5-large bf16 step from 493.6 to 476.9 ms, but its fp16 rounding of attention's
    /// scores and probabilities adds up to 7.5e-3 to the prompt gradient's relative error on the
    /// golden models (docs/benchmarks.md). Fused attention then runs on the matrix units as well
    /// (<see cref="Kernels.FusedAttentionKernel.MatrixUnitsTiling"/>), with the same rounding.</summary>
    public bool CooperativeMatrixAllProducts { get; init; } = CoopmatWords.Contains("all");

    /// <summary>Matrix-unit products whose fp32 A is wide enough to pay for it read a 16-bit copy
    /// of A (rounded as the product would round it, so the results are the same), made by one
    /// conversion shared by the products that read the same activation: half the bytes each
    /// product moves through its fill, and no rounding there. On unless
    /// VKPROMPT_COOPMAT_HALF_A=0: on an H200 a t5-large bf16 step took 493.6 ms with the copies
    /// against 503.3 without (docs/benchmarks.md).</summary>
    public bool CooperativeMatrixHalfActivations { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_COOPMAT_HALF_A") != "0";

    /// <summary>bf16 weights are stored as the fp16 halves the matrix units multiply
    /// (<see cref="Kernels.MatMulKernel.StoredPrecision"/>) where every 16-bit product runs on them:
    /// rounded once on upload rather than in every tile of every product, with the same result.
    /// On unless VKPROMPT_COOPMAT_FP16_WEIGHTS=0, which keeps them bf16 as asked.</summary>
    public bool CooperativeMatrixFp16Weights { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_COOPMAT_FP16_WEIGHTS") != "0";

    /// <summary>Which extension <see cref="CooperativeMatrix"/> uses: VKPROMPT_COOPMAT=khr or nv
    /// insists on one (an error where the device or the build lacks it); otherwise KHR where the
    /// device has it and the build compiled its kernel, else NV, else none. VKPROMPT_COOPMAT=nv2
    /// asks for the workgroup-scope kernel of VK_NV_cooperative_matrix2 (NVIDIA), KHR's kernel
    /// running the products it cannot: not yet measured on a GPU, so never chosen unasked.</summary>
    public MatrixUnitsExtension CooperativeMatrixExtension { get; init; } =
        CoopmatWords.Contains("nv2") ? MatrixUnitsExtension.Nv2
        : CoopmatWords.Contains("nv") ? MatrixUnitsExtension.Nv
        : CoopmatWords.Contains("khr") ? MatrixUnitsExtension.Khr
        : MatrixUnitsExtension.Auto;

    /// <summary>Runs products with fp16/bf16 weights through the cooperative-matrix kernel with its
    /// matrix operations emulated by ordinary arithmetic (matmul_coopmat_emulated.comp), in place
    /// of the matrix units, on any device with fp16 arithmetic and 16-bit storage: the kernel's
    /// results on a device without matrix units, as the tests check it on lavapipe; slow. On where
    /// VKPROMPT_COOPMAT=emulate, unless VKPROMPT_DISABLE_COOPMAT=1.</summary>
    public bool CooperativeMatrixEmulation { get; init; } =
        CoopmatWords.Contains("emulate") && Environment.GetEnvironmentVariable("VKPROMPT_DISABLE_COOPMAT") != "1";

    /// <summary>Replaces the device's tile shape of the portable matrix product, as
    /// "LXxLYxTMxTNxBK" (workgroup x and y, rows and columns per invocation, staged depth; 0 streams):
    /// a tuning switch. Default: VKPROMPT_MATMUL_TILING, else the shape chosen for the device.</summary>
    public string? MatMulTiling { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_MATMUL_TILING") is { Length: > 0 } t ? t : null;

    /// <summary>Replaces the tile shape of the cooperative-matrix product, as "WMxWNxTMxTNxBK"
    /// (subgroups per workgroup along m and n, 16x16 tiles per subgroup along m and n, staged
    /// depth). Default: VKPROMPT_COOPMAT_TILING, else the shape chosen for the device.</summary>
    public string? CoopMatTiling { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_COOPMAT_TILING") is { Length: > 0 } t ? t : null;

    /// <summary>Replaces the tile shape of the fused attention on the matrix units, as "WxB"
    /// (subgroups of 16 rows per workgroup, rows per streamed block) for forward and backward, or
    /// "WxB,WxB" (forward, backward). Default: VKPROMPT_COOPMAT_FLASH_TILING, else the deepest
    /// block whose shared memory fits (<see cref="Kernels.FusedAttentionMatrixUnitsTiling.For"/>).</summary>
    public string? CoopMatFlashTiling { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_COOPMAT_FLASH_TILING") is { Length: > 0 } t ? t : null;

    /// <summary>Replaces the workgroup size of the row kernels (softmax and its backward, RMSNorm,
    /// cross-entropy, argmax: one workgroup per row), a multiple of the subgroup size: a tuning
    /// switch, for trading invocations per row against rows in flight. Default:
    /// VKPROMPT_ROW_LOCAL_SIZE, else eight subgroups (at most 256).</summary>
    public int? RowLocalSize { get; init; } = int.TryParse(Environment.GetEnvironmentVariable("VKPROMPT_ROW_LOCAL_SIZE"), out int rows) ? rows : null;

    /// <summary>The softmax kernels give each row of up to 32 elements an invocation a subgroup of
    /// its own (<see cref="Kernels.Rows.SubgroupRows"/>): reductions without barriers and a row in
    /// flight per subgroup, PyTorch's warp-per-row softmax; longer rows take a workgroup. On unless
    /// VKPROMPT_ROW_SUBGROUP=0, which gives every row a workgroup, to compare.</summary>
    public bool SubgroupRows { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_ROW_SUBGROUP") != "0";

    /// <summary>Times each product of a training step with every candidate tiling before the step
    /// is recorded, and runs it with the fastest (<see cref="Kernels.MatMulTuner"/>), on GPUs and
    /// for kernels whose tiling no variable above forces. Off unless VKPROMPT_MATMUL_TUNE=1: it
    /// costs seconds at the first step of each batch shape, and on an H100 the built-in rule was
    /// measured (docs/benchmarks.md); on other GPUs it may choose better.</summary>
    public bool TuneMatMul { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_MATMUL_TUNE") == "1";

    /// <summary>Asks the driver what it compiled each pipeline into (VK_KHR_pipeline_executable_properties:
    /// registers per invocation, spills, shared memory, as the driver names them), for
    /// <see cref="Runtime.Kernel.Statistics"/> and <c>vkprompt bench matmul</c>'s report: how many
    /// workgroups of a kernel fit a multiprocessor follows from them. Off unless
    /// VKPROMPT_PIPELINE_STATS=1; drivers may compile differently while capturing.</summary>
    public bool PipelineStatistics { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_PIPELINE_STATS") == "1";

    /// <summary>Directory for the on-disk pipeline cache; null disables persistence.</summary>
    public string? PipelineCacheDirectory { get; init; } = DefaultCacheDirectory();

    /// <summary>Specializes the softmax kernels' SUBGROUP_ROWS with this value whatever the row
    /// length (tests of the fallback when subgroups are smaller than it).</summary>
    internal int? SubgroupRowsOverride { get; init; }

    /// <summary>Pretends the device's maxStorageBufferRange is this small (tests of split tensors).</summary>
    public long? MaxStorageBufferRangeOverride { get; init; }

    /// <summary>Receives diagnostic lines (device choice, pipeline cache hits); null is silent.</summary>
    public Action<string>? Log { get; init; }

    static string? DefaultCacheDirectory()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var home = Environment.GetEnvironmentVariable("HOME");
        var root = !string.IsNullOrEmpty(xdg) ? xdg : !string.IsNullOrEmpty(home) ? Path.Combine(home, ".cache") : null;
        return root is null ? null : Path.Combine(root, "vkprompt");
    }
}

/// <summary>The cooperative-matrix extension <see cref="GpuOptions.CooperativeMatrix"/> asks for.</summary>
public enum MatrixUnitsExtension { Auto, Khr, Nv, Nv2 }

/// <summary>Which build of the cooperative-matrix kernel a context runs (<see cref="GpuContext.MatrixUnits"/>).</summary>
public enum MatrixUnits
{
    /// <summary>None: every product runs on the portable kernels.</summary>
    None,
    /// <summary>matmul_coopmat_khr.comp, through VK_KHR_cooperative_matrix.</summary>
    Khr,
    /// <summary>matmul_coopmat.comp, through VK_NV_cooperative_matrix.</summary>
    Nv,
    /// <summary>matmul_coopmat_nv2.comp, through VK_NV_cooperative_matrix2 (workgroup scope, tensor
    /// addressing), with matmul_coopmat_khr.comp for the products it cannot address.</summary>
    Nv2,
    /// <summary>matmul_coopmat_emulated.comp: the same kernel in ordinary arithmetic.</summary>
    Emulated,
}
