namespace VkPrompt.Runtime;

/// <summary>How a <see cref="GpuContext"/> is created: a plain value, every field with a fixed
/// default. The library reads no environment variable; a program that wants the VKPROMPT_*
/// variables to configure it fills these from them (the CLI's <c>EnvironmentSettings</c>) and
/// records in <see cref="Sources"/> which value came from which variable, so that an error
/// about a value names where the user set it.</summary>
public sealed record GpuOptions
{
    /// <summary>"auto" (discrete &gt; integrated &gt; virtual &gt; CPU), "auto:N" (the N-th, modulo
    /// their count, of the devices of the kind auto picks: an MPI rank's local index), a device
    /// index, or a name substring.</summary>
    public string Device { get; init; } = "auto";

    /// <summary>Enables VK_LAYER_KHRONOS_validation with synchronization validation.</summary>
    public bool Validation { get; init; }

    /// <summary>Records a timestamp around every dispatch (see <see cref="CommandGraph.Timings"/>).</summary>
    public bool Profiling { get; init; }

    /// <summary>Whether and how products with fp16/bf16 weights run on the matrix units
    /// (<see cref="DevicePlan.MatrixUnits"/>), their activation operand rounded to fp16. Default
    /// <see cref="MatrixUnitsRequest.Auto"/>: on an H100 they ran a t5-base step's products in
    /// 199 ms against 345 ms for the portable product with bf16 weights (docs/benchmarks.md).</summary>
    public MatrixUnitsRequest MatrixUnits { get; init; } = MatrixUnitsRequest.Auto;

    /// <summary>Every product runs on the matrix units where <see cref="MatrixUnits"/> puts any
    /// there, those whose operands are both fp32 activations (attention's) too, rounded to fp16
    /// like the others' activations: the nearest to a peer that computes everything in bf16. Off
    /// by default: on an H200 it took a t5-large bf16 step from 493.6 to 476.9 ms, but its fp16
    /// rounding of attention's scores and probabilities adds up to 7.5e-3 to the prompt
    /// gradient's relative error on the golden models (docs/benchmarks.md). Fused attention then
    /// runs on the matrix units as well (<see cref="Kernels.FusedAttentionKernel.MatrixUnitsTiling"/>),
    /// with the same rounding.</summary>
    public bool MatrixUnitsAllProducts { get; init; }

    /// <summary>Matrix-unit products whose fp32 A is wide enough to pay for it read a 16-bit copy
    /// of A (rounded as the product would round it, so the results are the same), made by one
    /// conversion shared by the products that read the same activation: half the bytes each
    /// product moves through its fill, and no rounding there. On by default: on an H200 a
    /// t5-large bf16 step took 493.6 ms with the copies against 503.3 without (docs/benchmarks.md).</summary>
    public bool MatrixUnitsHalfActivations { get; init; } = true;

    /// <summary>The matrix units' kernels run in full subgroups of the size they are built for
    /// where the device can pin one (<see cref="DevicePlan.MatrixUnitsSubgroupPinned"/>). On by
    /// default; off only to tell, on a device where pinned pipelines fail, whether pinning is why.</summary>
    public bool MatrixUnitsPinSubgroups { get; init; } = true;

    /// <summary>How many invocations share each matrix of the fused attention on the emulated matrix
    /// units (<see cref="MatrixUnitsRequest.Emulate"/>; <see cref="DevicePlan.FusedAttentionSubgroupSize"/>):
    /// 8, 16, 32 or 64, as on units whose subgroups are that wide (Intel's Xe-HPG and lavapipe
    /// 26.1's 8, NVIDIA's 32, AMD's wave64), so that the kernels' handling of each width runs
    /// where no such device is (the tests, on lavapipe). Default 32. The emulated product keeps 32
    /// whatever this says (include/coopmat.glsl says why).</summary>
    public uint EmulatedAttentionSubgroupSize { get; init; } = 32;

    /// <summary>How the runs on this context keep their activations, where known when it is made
    /// (<c>--activations</c>); null: the plan's default (<see cref="DevicePlan.Activations"/>).
    /// The plan chooses the matrix units' fragments by it (<see cref="MatrixUnitsOperands"/>), so a
    /// run that asks for fp32 activations on a GPU whose default is bf16 multiplies fp16 fragments,
    /// as it would anywhere else. A run asking the model for other activations than its context was
    /// made with still runs, on the context's fragments.</summary>
    public ActivationPrecision? Activations { get; init; }

    /// <summary>Which type the matrix units' fragments hold (<see cref="DevicePlan.MatrixUnitsOperands"/>).
    /// Default <see cref="MatrixUnitsOperandsRequest.Auto"/>: bf16 where the device multiplies bf16
    /// fragments (VK_KHR_shader_bfloat16), the build compiled their kernels and the activations
    /// are bf16 (<see cref="Activations"/>, else the plan's default), so that no activation
    /// saturates at fp16's ±65504; fp16 otherwise.
    /// <see cref="MatrixUnitsOperandsRequest.Fp16"/> forces fp16 fragments (to compare on such a
    /// GPU); <see cref="MatrixUnitsOperandsRequest.Bf16"/> asks for bf16 ones, also of the emulated
    /// units (the tests on lavapipe), and is an error where they cannot be had.</summary>
    public MatrixUnitsOperandsRequest MatrixUnitsOperands { get; init; } = MatrixUnitsOperandsRequest.Auto;

    /// <summary>bf16 weights are stored as the fp16 halves the matrix units multiply
    /// (<see cref="DevicePlan.StoredPrecision"/>) where every 16-bit product runs on them: rounded
    /// once on upload rather than in every tile of every product, with the same result. On by
    /// default; off keeps them bf16 as asked.</summary>
    public bool MatrixUnitsFp16Weights { get; init; } = true;

    /// <summary>Replaces the device's tile shape of the portable matrix product, as
    /// "LXxLYxTMxTNxBK" (workgroup x and y, rows and columns per invocation, staged depth; 0
    /// streams): a tuning switch. Default null: the plan's rule for the device.</summary>
    public string? MatMulTiling { get; init; }

    /// <summary>Replaces the tile shape of the matrix-unit product, as "WMxWNxTMxTNxBK"
    /// (subgroups per workgroup along m and n, 16x16 tiles per subgroup along m and n, staged
    /// depth). Default null: the plan's rule for the device.</summary>
    public string? MatrixUnitsTiling { get; init; }

    /// <summary>Replaces the tile shape of the fused attention on the matrix units, as "WxB"
    /// (subgroups of 16 rows per workgroup, rows per streamed block) for forward and backward, or
    /// "WxB,WxB" (forward, backward). Default null: the deepest block whose shared memory fits, of
    /// at most 64 scores an invocation (<see cref="Kernels.FusedAttentionMatrixUnitsTiling.For"/>).</summary>
    public string? MatrixUnitsFusedAttentionTiling { get; init; }

    /// <summary>Replaces the workgroup size of the row kernels (softmax and its backward, RMSNorm,
    /// cross-entropy, argmax: one workgroup per row), a multiple of the subgroup size: a tuning
    /// switch, for trading invocations per row against rows in flight. Default null: eight
    /// subgroups (at most 256).</summary>
    public int? RowLocalSize { get; init; }

    /// <summary>The softmax kernels give each row of up to 32 elements an invocation a subgroup of
    /// its own (<see cref="DevicePlan.SubgroupRows"/>): reductions without barriers and a row in
    /// flight per subgroup, PyTorch's warp-per-row softmax; longer rows take a workgroup. On by
    /// default; off gives every row a workgroup, to compare.</summary>
    public bool SubgroupRows { get; init; } = true;

    /// <summary>Times each product of a training step with every candidate tiling before the step
    /// is recorded, and runs it with the fastest (<see cref="Kernels.MatMulTuner"/>), on GPUs and
    /// for kernels whose tiling no option above forces. Off by default: it costs seconds at the
    /// first step of each batch shape, and on an H100 the built-in rule was measured
    /// (docs/benchmarks.md); on other GPUs it may choose better.</summary>
    public bool TuneMatMul { get; init; }

    /// <summary>A CPU device gets the plan a GPU would (<see cref="DevicePlan.PlansForGpu"/>):
    /// staged products chosen by shape, large attentions fused, the staged fused-attention
    /// tiling. Slower on a CPU; for running the kernels GPUs run where there is none (the tests,
    /// on lavapipe at several subgroup sizes). Off by default.</summary>
    public bool PlanForGpu { get; init; }

    /// <summary>Asks the driver what it compiled each pipeline into (VK_KHR_pipeline_executable_properties:
    /// registers per invocation, spills, shared memory, as the driver names them), for
    /// <see cref="Runtime.Kernel.Statistics"/> and <c>vkprompt bench matmul</c>'s report: how many
    /// workgroups of a kernel fit a multiprocessor follows from them. Off by default; drivers may
    /// compile differently while capturing.</summary>
    public bool PipelineStatistics { get; init; }

    /// <summary>Directory for the on-disk pipeline cache; null (the default) keeps none.</summary>
    public string? PipelineCacheDirectory { get; init; }

    /// <summary>The most device memory the context reserves, in bytes: every block its memory
    /// pool takes from the driver counts, weights, activations and scratch alike, whether or not
    /// buffers fill it yet. Work that would need more is refused with a
    /// <see cref="DoesNotFitException"/> before it allocates anything (a host that shares the
    /// device keeps the rest for itself). Default null: no cap, only the device's memory and, where
    /// <see cref="DevicePlan.MemoryBudget"/>, its budget.</summary>
    public long? MemoryCapBytes { get; init; }

    /// <summary>The fraction of each heap's budget (VK_EXT_memory_budget, where
    /// <see cref="DevicePlan.MemoryBudget"/>) the memory pool leaves unreserved. The budget is an
    /// estimate that moves as other processes allocate, and the process's usage it is compared
    /// with includes the host's own allocations, which come and go (render targets, a resized
    /// swapchain): reserving up to the last byte would make the host's next allocation the one
    /// that fails, or push the driver to page. Default 0.1: on an 8 GiB card about 800 MiB stay
    /// free, room for a 4K frame's render targets (a few hundred MiB for a G-buffer in 16-bit
    /// float) and a swapchain being recreated; a host that knows its needs sets its own.</summary>
    public double MemoryBudgetMargin { get; init; } = 0.1;

    /// <summary>Specializes the softmax kernels' SUBGROUP_ROWS with this value whatever the row
    /// length (tests of the fallback when subgroups are smaller than it).</summary>
    internal int? SubgroupRowsOverride { get; init; }

    /// <summary>Pretends the device's maxStorageBufferRange is this small (tests of split tensors).</summary>
    public long? MaxStorageBufferRangeOverride { get; init; }

    /// <summary>Receives diagnostic lines (device choice, pipeline cache hits); null is silent.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Where values came from outside the program, by option name (e.g.
    /// "MatMulTiling"): the environment variable (or a front end's option) and its text. Only for messages: an error about
    /// an option's value names the variable too where the value is still the one it gave
    /// (<see cref="Describe"/>). Empty by default.</summary>
    public IReadOnlyDictionary<string, OptionSource> Sources { get; init; } = NoSources;

    // One empty instance, so that options equal but for where nothing came from compare equal.
    static readonly IReadOnlyDictionary<string, OptionSource> NoSources = new Dictionary<string, OptionSource>();

    /// <summary>How a message names option <paramref name="option"/> holding <paramref name="value"/>:
    /// "GpuOptions.MatMulTiling=4x4x4x4x4", preceded by the variable where <see cref="Sources"/>
    /// says the value came from one ("VKPROMPT_MATMUL_TILING=4x4x4x4x4 (GpuOptions.MatMulTiling)").</summary>
    public string Describe(string option, object? value)
    {
        string own = $"GpuOptions.{option}={value}";
        return Sources.TryGetValue(option, out var s) && Equals(s.Value, value) ? $"{s.Variable}={s.Text} ({own})" : own;
    }
}

/// <summary>An option's value as read from environment variable <paramref name="Variable"/> (or a
/// front end's option of that name) holding <paramref name="Text"/> (see <see cref="GpuOptions.Sources"/>).</summary>
public sealed record OptionSource(string Variable, string Text, object? Value);

/// <summary>What <see cref="GpuOptions.MatrixUnits"/> asks for.</summary>
public enum MatrixUnitsRequest
{
    /// <summary>Never: every product runs on the portable kernels.</summary>
    Off,
    /// <summary>VK_KHR_cooperative_matrix where the device has it and the build compiled its
    /// kernel, else VK_NV_cooperative_matrix, else none.</summary>
    Auto,
    /// <summary>VK_KHR_cooperative_matrix, or an error where the device or the build lacks it.</summary>
    Khr,
    /// <summary>VK_NV_cooperative_matrix, or an error where the device lacks it.</summary>
    Nv,
    /// <summary>The workgroup-scope kernel of VK_NV_cooperative_matrix2 (NVIDIA), KHR's kernel
    /// running the products it cannot; an error where missing. Not yet measured on a GPU, so
    /// never chosen unasked.</summary>
    Nv2,
    /// <summary>The matrix-unit kernel with its matrix operations done by ordinary arithmetic
    /// (matmul_coopmat_emulated.comp), on any device with fp16 arithmetic and 16-bit storage: the
    /// kernel's results where there are no matrix units, as the tests check it on lavapipe; slow.</summary>
    Emulate,
}

/// <summary>What <see cref="GpuOptions.MatrixUnitsOperands"/> asks for.</summary>
public enum MatrixUnitsOperandsRequest
{
    /// <summary>The plan's choice (<see cref="DevicePlan.MatrixUnitsOperands"/>).</summary>
    Auto,
    /// <summary>fp16 fragments, as before bf16 ones existed.</summary>
    Fp16,
    /// <summary>bf16 fragments, or an error where the units (or their emulation) or the build cannot.</summary>
    Bf16,
}

/// <summary>The type of the matrix units' A and B fragments (<see cref="DevicePlan.MatrixUnitsOperands"/>);
/// they accumulate in fp32 either way.</summary>
public enum MatrixUnitsOperands
{
    /// <summary>fp16: 11 significant bits, saturated at ±65504 as operands are rounded to it.</summary>
    Fp16,
    /// <summary>bf16 (VK_KHR_shader_bfloat16): 8 significant bits, fp32's range.</summary>
    Bf16,
}

/// <summary>Which build of the matrix-unit kernel a context runs (<see cref="DevicePlan.MatrixUnits"/>).</summary>
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
