using System.Text.Json;
using System.Text.Json.Nodes;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime;

/// <summary>Everything VkPrompt chooses per device, decided in this one place from the device's
/// <see cref="DeviceCapabilities"/>, the <see cref="GpuOptions"/> and which kernels this build
/// compiled, once per context (<see cref="GpuContext.Plan"/>): whether and through which extension
/// the matrix units run products, the product kernels' tiling rules and forced tilings, whether
/// the tuner runs, how frozen weights are stored, whether attention fuses by default, the row
/// kernels' sizes, the 16-bit copies of activations and the limits on device memory. Choices that depend on a product or an
/// attention's shape are functions here, with their thresholds; kernels, the model and the CLI ask
/// the plan rather than deciding. <see cref="ToJson"/> prints every choice.</summary>
public sealed record DevicePlan
{
    /// <summary>The device planned for.</summary>
    public DeviceCapabilities Capabilities { get; }

    /// <summary>The options planned with.</summary>
    public GpuOptions Options { get; }

    /// <summary>Which build of the matrix-unit kernel runs the products with 16-bit weights (all
    /// products with <see cref="GpuOptions.MatrixUnitsAllProducts"/>), if any: as
    /// <see cref="GpuOptions.MatrixUnits"/> asked, where the device has them (an adopted device:
    /// where its host enabled them, <see cref="HostDevice.Declare"/>) and this build compiled the kernel.</summary>
    public MatrixUnits MatrixUnits { get; }

    /// <summary>The type of the matrix units' A and B fragments, decided once for the context:
    /// bf16 where <see cref="GpuOptions.MatrixUnitsOperands"/> asks, or, unasked, where the units
    /// run through VK_KHR_cooperative_matrix on a device that multiplies bf16 fragments
    /// (<see cref="DeviceCapabilities.CooperativeMatrixBf16"/>), this build compiled their kernels
    /// (matmul_coopmat*_khr_bf16.comp) and the activations are bf16 (<see cref="Activations"/>,
    /// the run's where <see cref="GpuOptions.Activations"/> says): bf16 activations then enter the units as stored, and none
    /// saturates at fp16's ±65504 (T5 v1.1's feed-forward can exceed it), at the cost of rounding
    /// fp16 and fp32 operands to 8 significant bits rather than 11 (docs/numerics.md, section 8).
    /// fp16 otherwise, and always for VK_NV_cooperative_matrix (no bf16 there), the
    /// workgroup-scope kernel and fused attention, whose kernels multiply fp16 (with
    /// VK_NV_cooperative_matrix2 asked for, bf16 only where asked too: the products then all run
    /// the KHR kernel). The emulated units
    /// multiply bf16 only where asked. With bf16 fragments bf16 weights stay bf16
    /// (<see cref="StoredPrecision"/>) and no fp16 copies of activations are made (<see cref="HalfCopies"/>).</summary>
    public MatrixUnitsOperands MatrixUnitsOperands { get; }

    /// <summary><see cref="MatrixUnitsOperands"/> is bf16.</summary>
    internal bool Bf16Fragments => MatrixUnitsOperands == MatrixUnitsOperands.Bf16;

    /// <summary>The device multiplies bf16 fragments (not their emulation): the device is created
    /// with VK_KHR_shader_bfloat16 and its features.</summary>
    internal bool Bf16FragmentsOnUnits => Bf16Fragments && MultipliesThroughKhr;

    /// <summary>The subgroup size the matrix-unit kernel is built for: the device's, or the 32
    /// invocations the emulation groups together whatever the device's.</summary>
    public uint MatrixUnitsSubgroupSize => MatrixUnits == MatrixUnits.Emulated ? 32 : Capabilities.SubgroupSize;

    /// <summary>The subgroup size the fused attention on the matrix units is specialised for
    /// (<see cref="FusedAttentionOnMatrixUnits"/>): <see cref="MatrixUnitsSubgroupSize"/>, or on the
    /// emulated units the width <see cref="GpuOptions.EmulatedAttentionSubgroupSize"/> asks for.</summary>
    public uint FusedAttentionSubgroupSize => MatrixUnits == MatrixUnits.Emulated ? Options.EmulatedAttentionSubgroupSize : MatrixUnitsSubgroupSize;

    /// <summary>The units' fragment shape the KHR kernels compose each 16x16x16 product of
    /// (<see cref="DeviceCapabilities.CooperativeMatrixFragment"/>); 16x16x16 for the NV kernel and
    /// the emulation, which multiply that shape only.</summary>
    public MatrixFragment MatrixUnitsFragment => MultipliesThroughKhr ? Capabilities.CooperativeMatrixFragment : MatrixFragment.Whole;

    /// <summary>The units multiply through VK_KHR_cooperative_matrix's subgroup-scope kernels
    /// (<see cref="MatrixUnits.Khr"/>, and <see cref="MatrixUnits.Nv2"/> for the products its own kernel cannot address).</summary>
    internal bool MultipliesThroughKhr => MatrixUnits is MatrixUnits.Khr or MatrixUnits.Nv2;

    /// <summary>The matrix units' kernels run in full subgroups of exactly <see cref="MatrixUnitsSubgroupSize"/>
    /// invocations (<see cref="DeviceCapabilities.SubgroupSizeControl"/>): a subgroup-scope matrix
    /// is spread over the invocations of one real subgroup, and the kernels give each subgroup its
    /// tiles by its index (gl_SubgroupID), which holds only where every subgroup is full; the
    /// required size also keeps a future build at SPIR-V 1.6, where the driver may vary the size,
    /// at the one the kernels are specialised for. Where the device cannot pin it, the kernels
    /// assume full subgroups of the reported size, as NVIDIA's always are. Never the emulation's,
    /// whose subgroups are its own grouping.</summary>
    public bool MatrixUnitsSubgroupPinned =>
        MatrixUnits is MatrixUnits.Khr or MatrixUnits.Nv or MatrixUnits.Nv2 && Capabilities.SubgroupSizeControl && Options.MatrixUnitsPinSubgroups;

    /// <summary>Products of two fp32 operands run on the matrix units too (<see cref="GpuOptions.MatrixUnitsAllProducts"/>).</summary>
    public bool MatrixUnitsAllProducts => MatrixUnits != MatrixUnits.None && Options.MatrixUnitsAllProducts;

    /// <summary>The tiling every product of the portable kernel gets where <see cref="GpuOptions.MatMulTiling"/>
    /// forces one (checked when a product first uses it); null follows <see cref="PortableRule"/>.</summary>
    public string? ForcedPortableTiling => Options.MatMulTiling;

    /// <summary>The same for the matrix-unit kernel (<see cref="GpuOptions.MatrixUnitsTiling"/>).</summary>
    public string? ForcedMatrixUnitsTiling => MatrixUnits == MatrixUnits.None ? null : Options.MatrixUnitsTiling;

    /// <summary>The choices below that differ between CPUs and GPUs take the GPU's: on every
    /// device but a CPU, and on a CPU where <see cref="GpuOptions.PlanForGpu"/> asks (the tests run
    /// the GPU's kernels on lavapipe that way).</summary>
    public bool PlansForGpu => Capabilities.DeviceType != "cpu" || Options.PlanForGpu;

    /// <summary>How the portable product picks a tiling per product: "streamed" on CPU devices
    /// (<see cref="MatMulTiling.Streamed"/>: lavapipe ran the staged variants 3.5x slower), else
    /// "by-shape" (<see cref="MatMulTiling.ForGpu"/>); see <see cref="PlansForGpu"/>.</summary>
    public string PortableRule => PlansForGpu ? "by-shape" : "streamed";

    /// <summary>Products are timed before a training step and run with the fastest tiling
    /// (<see cref="GpuOptions.TuneMatMul"/>), on GPUs only (<see cref="PlansForGpu"/>): a CPU
    /// device has one tiling to run.</summary>
    public bool TunesProducts => Options.TuneMatMul && PlansForGpu;

    /// <summary>Frozen bf16 weights are stored as fp16 (<see cref="StoredPrecision"/>).</summary>
    public bool Fp16Weights => MatrixUnits != MatrixUnits.None && Options.MatrixUnitsFp16Weights && !Bf16Fragments;

    /// <summary>The largest buffer range a kernel binds, after any test override.</summary>
    public long MaxBindingBytes => Math.Min(Capabilities.MaxStorageBufferRange, Options.MaxStorageBufferRangeOverride ?? long.MaxValue);

    /// <summary>The part of a GPU-time budget a slice is packed to by its estimates
    /// (<see cref="CommandGraph.Advance"/>): all of it on GPUs, where an op's time repeats closely
    /// from run to run and the estimates' decaying maximum covers what varies; half on a CPU
    /// device, whose "GPU" time is threads sharing the cores with the host's, so the same op took
    /// up to twice as long from one run to the next on lavapipe and a slice packed to the whole
    /// budget overran it by as much. By the device's type, not <see cref="PlansForGpu"/>: the
    /// kernels a CPU device runs do not change how its threads are scheduled.</summary>
    public double SliceFill => Capabilities.DeviceType == "cpu" ? 0.5 : 1.0;

    /// <summary>How a step keeps its activations: as <see cref="GpuOptions.Activations"/> asks, or
    /// where the run does not say (<c>--activations auto</c>) bf16 on a GPU with 16-bit storage,
    /// which halves what a stored block keeps and what its products move and, unlike fp16, cannot
    /// overflow in T5 v1.1's feed-forward; fp32 elsewhere, and on CPU devices, where the widening
    /// and narrowing cost more arithmetic than the bytes they save (the same rule as
    /// <see cref="PlansForGpu"/>).</summary>
    public ActivationPrecision Activations => Options.Activations
        ?? (PlansForGpu && ActivationPrecision.Bf16.IsSupported(Capabilities) ? ActivationPrecision.Bf16 : ActivationPrecision.Fp32);

    /// <summary>Workgroup size of the row kernels (one workgroup per row):
    /// <see cref="GpuOptions.RowLocalSize"/> where set, else eight subgroups, enough invocations
    /// for rows of a few hundred elements and few enough partials that subgroup 0 folds them in
    /// one step, capped at 256, which every device runs and which keeps several rows in flight
    /// per compute unit.</summary>
    public int RowLocalSize { get; }

    /// <summary>Pipeline statistics are collected (<see cref="GpuOptions.PipelineStatistics"/>):
    /// where the device reports them (an adopted device: where its host enabled the extension and feature).</summary>
    public bool PipelineStatistics { get; }

    /// <summary>The memory pool stays inside each heap's budget (VK_EXT_memory_budget) less
    /// <see cref="GpuOptions.MemoryBudgetMargin"/>, asking the budget before it reserves a block:
    /// where the device has the extension and it is enabled, by the context on a device it creates,
    /// by the host on one it lends (<see cref="HostDevice.MemoryBudgetEnabled"/>: what the host
    /// declares it enabled, since Vulkan cannot report it). The host's own allocations count
    /// in the usage the budget is compared with, so the pool leaves them room.</summary>
    public bool MemoryBudget { get; }

    /// <summary>The cap on the bytes the memory pool reserves (<see cref="GpuOptions.MemoryCapBytes"/>), null for none.</summary>
    public long? MemoryCapBytes => Options.MemoryCapBytes;

    internal const string KhrMatMulShader = "matmul_coopmat_khr";
    internal const string Nv2MatMulShader = "matmul_coopmat_nv2";
    internal const string KhrBf16MatMulShader = "matmul_coopmat_khr_bf16";

    /// <summary>The plan for a context that creates its device on <paramref name="caps"/> with
    /// <paramref name="options"/> and this build's kernels, as <see cref="GpuContext.Create"/>
    /// makes it; a device need not exist (capabilities recorded elsewhere plan the same).</summary>
    /// <exception cref="GpuException">The options ask for what the device or the build lacks.</exception>
    public static DevicePlan For(DeviceCapabilities caps, GpuOptions options) =>
        new(caps, options, Kernel.IsEmbedded(KhrMatMulShader), Kernel.IsEmbedded(Nv2MatMulShader), Kernel.IsEmbedded(KhrBf16MatMulShader));

    /// <summary>The plan for a device a host created and lends (<see cref="GpuContext.Adopt(HostDevice, GpuOptions?)"/>):
    /// the same choices as <see cref="For"/>, among the capabilities as the host declared them
    /// (<see cref="HostDevice.Declare"/>), so the matrix units and pipeline statistics run where
    /// the host enabled them. VK_EXT_memory_budget counts only where
    /// <see cref="HostDevice.MemoryBudgetEnabled"/>.</summary>
    /// <exception cref="GpuException">The options ask for what the host did not enable.</exception>
    public static DevicePlan ForAdopted(HostDevice host, DeviceCapabilities device, GpuOptions options) => For(host.Declare(device), options);

    /// <param name="caps">the device's capabilities (as its host declared them, for an adopted device)</param>
    /// <param name="options">the host's options</param>
    /// <param name="khrBuilt">this build compiled the KHR kernel</param>
    /// <param name="nv2Built">and the workgroup-scope one</param>
    /// <param name="bf16Built">and the KHR kernels with bf16 fragments</param>
    internal DevicePlan(DeviceCapabilities caps, GpuOptions options, bool khrBuilt, bool nv2Built, bool bf16Built = false)
    {
        if (options.MemoryCapBytes is <= 0)
            throw new GpuException($"{options.Describe(nameof(GpuOptions.MemoryCapBytes), options.MemoryCapBytes)}: a memory cap must be a positive number of bytes");
        if (!(options.MemoryBudgetMargin is >= 0 and < 1))
            throw new GpuException($"{options.Describe(nameof(GpuOptions.MemoryBudgetMargin), options.MemoryBudgetMargin)}: the margin is a fraction of the budget, at least 0 and below 1");
        Capabilities = caps;
        Options = options;
        MatrixUnits = ChooseMatrixUnits(caps, options, khrBuilt, nv2Built);
        MatrixUnitsOperands = ChooseOperands(caps, options, bf16Built);
        PipelineStatistics = options.PipelineStatistics && caps.PipelineExecutableStatistics;
        RowLocalSize = ChooseRowLocalSize(caps, options);
        if (options.EmulatedAttentionSubgroupSize is not (8 or 16 or 32 or 64))
            throw new GpuException($"{options.Describe(nameof(GpuOptions.EmulatedAttentionSubgroupSize), options.EmulatedAttentionSubgroupSize)}: the emulated units' subgroups are 8, 16, 32 or 64 invocations wide");
        MemoryBudget = caps.MemoryBudget;
    }

    /// <summary>The plan is for a device a host lends (<see cref="ForAdopted"/>), its capabilities
    /// as the host declared them.</summary>
    public bool Adopted => Capabilities.DeclaredByHost;

    /// <summary>The matrix units for <paramref name="caps"/> as <see cref="GpuOptions.MatrixUnits"/>
    /// asks: the workgroup-scope kernel only ever where asked for, never chosen.</summary>
    static MatrixUnits ChooseMatrixUnits(DeviceCapabilities caps, GpuOptions options, bool khrBuilt, bool nv2Built)
    {
        string asked = options.Describe(nameof(GpuOptions.MatrixUnits), options.MatrixUnits);
        bool khr = caps.CooperativeMatrixKhr && khrBuilt;
        return options.MatrixUnits switch
        {
            MatrixUnitsRequest.Off => MatrixUnits.None,
            MatrixUnitsRequest.Emulate => caps.ShaderFloat16 && caps.StorageBuffer16Bit ? MatrixUnits.Emulated
                : throw new GpuException($"{asked}: the emulated matrix-unit kernel needs fp16 arithmetic (shaderFloat16) and 16-bit storage buffers, which {caps.Described} lacks"),
            MatrixUnitsRequest.Khr when khr => MatrixUnits.Khr,
            MatrixUnitsRequest.Khr => throw new GpuException(!khrBuilt
                ? $"{asked}: the matrix units were asked for through VK_KHR_cooperative_matrix, but this build has no matmul_coopmat_khr shader: its glslc could not compile " +
                  "GL_KHR_cooperative_matrix (Debian 12's glslang 11 cannot); tools/fetch-glslc.sh fetches one that can, and the next build uses it"
                : $"{asked}: the matrix units were asked for through VK_KHR_cooperative_matrix, but {caps.Described} lacks it with fp16·fp16+fp32 at subgroup scope in a shape of sides 8 or 16, " +
                  "shaderFloat16, 16-bit storage, the Vulkan memory model or VK_EXT_subgroup_size_control's full subgroups (see vkprompt devices)"),
            MatrixUnitsRequest.Nv2 when khr && nv2Built && caps.CooperativeMatrix2Nv && MatrixUnitsTiling.WorkgroupCandidates.Any(t => t.FitsWorkgroupScope(caps)) => MatrixUnits.Nv2,
            MatrixUnitsRequest.Nv2 => throw new GpuException(!khrBuilt || !nv2Built
                ? $"{asked}: the matrix units were asked for through VK_NV_cooperative_matrix2, but this build lacks the matmul_coopmat_khr or matmul_coopmat_nv2 shader: its glslc could not " +
                  "compile GL_KHR_cooperative_matrix or GL_NV_cooperative_matrix2 (glslang 15 can); tools/fetch-glslc.sh fetches one that can, and the next build uses it"
                : $"{asked}: the matrix units were asked for through VK_NV_cooperative_matrix2, but {caps.Described} lacks it with workgroup scope, flexible dimensions, tensor addressing and " +
                  "fp16·fp16+fp32 at workgroup scope in blocks this build's tilings can use, beside VK_KHR_cooperative_matrix and Vulkan 1.3 (see vkprompt devices)"),
            MatrixUnitsRequest.Nv => caps.CooperativeMatrixNv ? MatrixUnits.Nv
                : throw new GpuException($"{asked}: the matrix units were asked for through VK_NV_cooperative_matrix, but {caps.Described} lacks it with 16x16x16 fp16·fp16+fp32 at subgroup scope (see vkprompt devices)"),
            _ => khr ? MatrixUnits.Khr : caps.CooperativeMatrixNv ? MatrixUnits.Nv : MatrixUnits.None,
        };
    }

    /// <summary>The fragments' type (<see cref="MatrixUnitsOperands"/>), once <see cref="MatrixUnits"/> is chosen.</summary>
    MatrixUnitsOperands ChooseOperands(DeviceCapabilities caps, GpuOptions options, bool bf16Built)
    {
        bool khrBf16 = MatrixUnits is MatrixUnits.Khr or MatrixUnits.Nv2 && caps.CooperativeMatrixBf16 && bf16Built;
        return options.MatrixUnitsOperands switch
        {
            MatrixUnitsOperandsRequest.Fp16 => MatrixUnitsOperands.Fp16,
            MatrixUnitsOperandsRequest.Bf16 when khrBf16 || MatrixUnits == MatrixUnits.Emulated => MatrixUnitsOperands.Bf16,
            MatrixUnitsOperandsRequest.Bf16 => throw new GpuException(
                $"{options.Describe(nameof(GpuOptions.MatrixUnitsOperands), options.MatrixUnitsOperands)}: bf16 fragments need the matrix units through " +
                (MatrixUnits is not (MatrixUnits.Khr or MatrixUnits.Nv2) ? $"VK_KHR_cooperative_matrix (or their emulation), but this context's are {MatrixUnits.ToString().ToLowerInvariant()}"
                 : !bf16Built ? $"VK_KHR_cooperative_matrix, but this build has no {KhrBf16MatMulShader} shader: its glslc could not compile GL_EXT_bfloat16 (glslang 16 can); " +
                                "tools/fetch-glslc.sh fetches one that can, and the next build uses it"
                 : $"VK_KHR_cooperative_matrix with VK_KHR_shader_bfloat16 and bf16·bf16+fp32 at subgroup scope in the fp16 fragments' shape ({caps.CooperativeMatrixFragment.M}x{caps.CooperativeMatrixFragment.N}x{caps.CooperativeMatrixFragment.K}), which {caps.Described} lacks (see vkprompt devices)")),
            // Not unasked with GpuOptions.MatrixUnits = Nv2, whose workgroup-scope kernel multiplies fp16 only.
            _ => khrBf16 && MatrixUnits == MatrixUnits.Khr && Activations == ActivationPrecision.Bf16 ? MatrixUnitsOperands.Bf16 : MatrixUnitsOperands.Fp16,
        };
    }

    static int ChooseRowLocalSize(DeviceCapabilities caps, GpuOptions options)
    {
        if (options.RowLocalSize is not { } set) return (int)Math.Clamp(8 * caps.SubgroupSize, 32, 256);
        if (set <= 0 || set % caps.SubgroupSize != 0 || set > caps.MaxComputeWorkGroupInvocations)
            throw new GpuException($"{options.Describe(nameof(GpuOptions.RowLocalSize), set)}: needs a multiple of the subgroup size ({caps.SubgroupSize}) of at most {caps.MaxComputeWorkGroupInvocations}");
        return set;
    }

    // ---- products ----

    /// <summary>Whether a product whose B is stored as <paramref name="bPrecision"/> runs on the
    /// matrix units: where the plan uses them, if B is a 16-bit or int8 weight, or whatever B is
    /// with <see cref="MatrixUnitsAllProducts"/>; an int8 B only in the products that read it as
    /// A·Bᵀ (<see cref="OnMatrixUnits(in MatMulSpec, WeightPrecision)"/>).</summary>
    public bool OnMatrixUnits(WeightPrecision bPrecision) =>
        MatrixUnits != MatrixUnits.None && (bPrecision != WeightPrecision.Fp32 || MatrixUnitsAllProducts);

    /// <summary>Whether product <paramref name="s"/> runs on the matrix units: as
    /// <see cref="OnMatrixUnits(WeightPrecision)"/> says, except that an int8 B goes there only
    /// read as A·Bᵀ (bStrideK = 1: the forward's products, the LM head's), where its bytes enter
    /// the units exactly and each column of C takes its row's scale (matmul_coopmat_int8*). Read
    /// as A·B (the backward's dX = dY·W) its scale varies along the sum, and folding it into
    /// either operand before the fp16 rounding would round the weights (q · scale is no fp16
    /// value) or push small gradients into fp16's subnormals; those products run matmul_int8.</summary>
    internal bool OnMatrixUnits(in MatMulSpec s, WeightPrecision bPrecision) =>
        OnMatrixUnits(bPrecision) && (bPrecision != WeightPrecision.Int8 || s.BStrideK == 1 && (s.K == 1 || s.BStrideN != 1));

    /// <summary>Whether a matrix-unit product runs the workgroup-scope kernel
    /// (matmul_coopmat_nv2.comp): with VK_NV_cooperative_matrix2 and fp16 fragments (the kernel multiplies fp16), where each operand is contiguous
    /// along one of its indices (tensor addressing needs a unit stride) and B is fp16, or fp32 to
    /// be copied to fp16. A bf16 B (fp16 weights off), an int8 B (scaled per column as the KHR
    /// kernel stores C) and operands strided both ways run the KHR kernel. So do products with a
    /// 16-bit A, activation B or C: the subgroup-scope kernel reads such operands without copies
    /// and narrows a 16-bit C as it stores it, while the workgroup-scope kernel takes fp16 copies
    /// and stores fp32, and no device at hand has VK_NV_cooperative_matrix2 to test it reading
    /// or writing 16-bit activations. Products with an epilogue (<see cref="MatMulSpec.Epilogue"/>)
    /// run the KHR kernel too: the workgroup-scope kernel stores whole blocks, with no element's
    /// index for the dropout mask.</summary>
    internal bool OnWorkgroupScope(in MatMulSpec s, WeightPrecision bPrecision) =>
        MatrixUnits == MatrixUnits.Nv2 && !Bf16Fragments && bPrecision is not (WeightPrecision.Bf16 or WeightPrecision.Int8)
        && s is { AStorage: ActivationPrecision.Fp32, BStorage: ActivationPrecision.Fp32, CStorage: ActivationPrecision.Fp32, Epilogue: MatMulEpilogue.None }
        && (s.AStrideK == 1 || s.AStrideM == 1) && (s.BStrideK == 1 || s.BStrideN == 1);

    /// <summary>How a frozen weight asked for as <paramref name="requested"/> is stored: bf16 as
    /// fp16 where the matrix units run the products that read it and <see cref="GpuOptions.MatrixUnitsFp16Weights"/>
    /// allows, else as asked. The units multiply fp16, so the kernel would otherwise convert every
    /// bf16 weight it stages, in every tile of every product; converted once on upload
    /// (<see cref="HalfFloat.EncodeBf16AsFp16"/>, with the kernel's rounding and saturation) the
    /// products give the same results. An embedding table that is only gathered from is stored
    /// the same way: the values differ from bf16 only below fp16's normal range (by less than
    /// 3e-8) and beyond ±65504. With bf16 fragments (<see cref="MatrixUnitsOperands"/>) they stay
    /// bf16, which the units then take as stored.</summary>
    public WeightPrecision StoredPrecision(WeightPrecision requested) =>
        requested == WeightPrecision.Bf16 && OnMatrixUnits(requested) && Fp16Weights ? WeightPrecision.Fp16 : requested;

    /// <summary>The kernel and tiling of a product: the matrix units where the plan puts this B
    /// there, else the portable product; the tiling forced by the options, else the one
    /// <paramref name="tunings"/> measured fastest for products like this, else the rule's.</summary>
    internal MatMulChoice Product(in MatMulSpec s, WeightPrecision bPrecision, MatMulTunings? tunings = null) =>
        OnMatrixUnits(s, bPrecision)
            ? new(MatrixUnitsProductTiling(s, bPrecision, tunings), OnWorkgroupScope(s, bPrecision))
            : new(PortableTiling(s, bPrecision, tunings));

    /// <summary>The portable product's tiling (<see cref="Product"/>).</summary>
    internal MatMulTiling PortableTiling(in MatMulSpec s, WeightPrecision bPrecision, MatMulTunings? tunings = null)
    {
        if (Options.MatMulTiling is { } text) return MatMulTiling.Parse(text, Capabilities, Options);
        if (tunings?.Find(s, bPrecision)?.Choice.Portable is { } tuned) return tuned;
        return PortableRule == "streamed" ? MatMulTiling.Streamed : MatMulTiling.ForGpu(s, Capabilities);
    }

    /// <summary>The matrix-unit product's tiling (<see cref="Product"/>): at workgroup scope
    /// <see cref="MatrixUnitsTiling.ForWorkgroupScope"/>, on a CPU device's own units
    /// <see cref="MatrixUnitsTiling.OneTile"/>, else <see cref="MatrixUnitsTiling.ForSubgroupScope"/>.</summary>
    internal MatrixUnitsTiling MatrixUnitsProductTiling(in MatMulSpec s, WeightPrecision bPrecision, MatMulTunings? tunings = null)
    {
        bool workgroupScope = OnWorkgroupScope(s, bPrecision);
        if (Options.MatrixUnitsTiling is { } text)
            return workgroupScope ? MatrixUnitsTiling.ParseWorkgroupScope(text, Capabilities, Options)
                : MatrixUnitsTiling.ParseSubgroupScope(text, Capabilities, MatrixUnitsSubgroupSize, Options);
        if (tunings?.Find(s, bPrecision)?.Choice.MatrixUnits is { } tuned) return tuned;
        if (workgroupScope) return MatrixUnitsTiling.ForWorkgroupScope(Capabilities, s);
        // A CPU driver compiles each pipeline's matrix instructions into scalar code when it is
        // created, and lavapipe 26.1 takes about 13 times as long over the default tiling's 8
        // accumulators a subgroup as over one (t5-small's products, 8x8x8 fragments: 93 s
        // against 7 s), while nobody times products there. The emulation keeps the GPU rule, so
        // that CI's lavapipe tests the tilings the GPUs run.
        return MatrixUnitsOneTile ? MatrixUnitsTiling.OneTile : MatrixUnitsTiling.ForSubgroupScope(Capabilities, s);
    }

    /// <summary>Every subgroup-scope product takes <see cref="MatrixUnitsTiling.OneTile"/>: the
    /// device is a CPU (and <see cref="GpuOptions.PlanForGpu"/> does not say otherwise) and the
    /// matrix units are its own (<see cref="MatrixUnitsProductTiling"/>).</summary>
    bool MatrixUnitsOneTile => !PlansForGpu && MatrixUnits is MatrixUnits.Khr or MatrixUnits.Nv;

    // A copy costs about 6 bytes moved per element of its operand, the product 2·N flops per
    // element of A (2·M per element of B): at 256 and an H100's rates (3 TB/s, a few hundred
    // TFLOP/s on the matrix units) a copy used once costs a fifth to a third of the product it
    // serves. Below that are the per-head attention products' operands that meet d_kv (64):
    // there a copy would cost as much as the product.
    internal const int HalfCopyMinOther = 256;

    /// <summary>Matrix-unit products may read 16-bit copies of their fp32 operands (<see cref="HalvesA"/>):
    /// fp16 copies (to_half.comp), so not where the fragments are bf16, whose kernel rounds fp32
    /// operands to bf16 as it stages them.</summary>
    public bool HalfCopies => MatrixUnits != MatrixUnits.None && Options.MatrixUnitsHalfActivations && !Bf16Fragments;

    /// <summary>Whether a matrix-unit product reads a 16-bit copy of its A: where A is fp32 (one
    /// kept in 16 bits is read straight), <see cref="HalfCopies"/>, the product is at least 256
    /// columns wide, and the range A spans is at most twice the elements it uses (a strided view
    /// would convert what it skips).</summary>
    internal bool HalvesA(in MatMulSpec s) =>
        s.AStorage == ActivationPrecision.Fp32 && Options.MatrixUnitsHalfActivations && !Bf16Fragments && s.N >= HalfCopyMinOther && Used(s) > 0
        && s.Extents().A - s.AOffset <= 2L * s.M * s.K * s.Batch1 * s.Batch2;

    /// <summary>The same for an fp32 B (the products of two activations that
    /// <see cref="MatrixUnitsAllProducts"/> puts on the matrix units), at least 256 rows deep.</summary>
    internal bool HalvesB(in MatMulSpec s) =>
        s.BStorage == ActivationPrecision.Fp32 && Options.MatrixUnitsHalfActivations && !Bf16Fragments && s.M >= HalfCopyMinOther && Used(s) > 0
        && s.Extents().B - s.BOffset <= 2L * s.N * s.K * s.Batch1 * s.Batch2;

    /// <summary>Multiply-adds the product makes: none (nothing to copy for) where any size is 0.</summary>
    internal static long Used(in MatMulSpec s) => (long)s.M * s.N * s.K * s.Batch1 * s.Batch2;

    // ---- attention ----

    // Fusing saves writing and reading the [Lq, Lk] scores of every head, and storing them for
    // the backward: memory, above all, for long inputs. It is not yet faster: on an H100 the
    // unfused step of t5-base (batch 32, 612 tokens) took 539 ms against 798 fused, t5-large
    // 1724 against 2407, and on lavapipe the streamed matmuls ran attention about 2x (forward)
    // and 4x (backward) faster at 8 heads x 512² x d_kv 64. So GPUs fuse from 1024² scores per
    // head (4 MiB each, 1.5 GiB per layer at batch 32 x 12 heads), where storing them starts to
    // decide what fits; CPU devices never, unless the scores would not fit one buffer a kernel
    // can bind (lavapipe's is 128 MiB: one head of 6k x 6k), where unfused cannot run at all.
    /// <summary>Scores per head (query length x key length) from which GPUs fuse attention by default.</summary>
    public const long FuseFromScoresPerHead = 1024 * 1024;

    /// <summary>Whether attention fuses by default on GPUs from <see cref="FuseFromScoresPerHead"/>
    /// scores a head; never on CPU devices (below, <see cref="FusesAttentionByDefault"/>).</summary>
    public bool FusesLargeAttention => PlansForGpu;

    /// <summary>Whether an attention with scores of this shape runs fused where nothing asks
    /// (<c>AttentionFusion.Auto</c>): where its scores would not fit one binding, and on GPUs from
    /// <see cref="FuseFromScoresPerHead"/> scores a head.</summary>
    internal bool FusesAttentionByDefault(AttentionShape scores) =>
        scores.Elements * sizeof(float) > MaxBindingBytes
        || (FusesLargeAttention && (long)scores.QueryLength * scores.KeyLength >= FuseFromScoresPerHead);

    /// <summary>Fused attention runs on the matrix units (<see cref="FusedAttentionKernel.MatrixUnitsTiling"/>,
    /// where d_kv allows): where every product does, through a kernel built for it (KHR, or emulated).</summary>
    public bool FusedAttentionOnMatrixUnits => MatrixUnitsAllProducts && MatrixUnits is MatrixUnits.Khr or MatrixUnits.Nv2 or MatrixUnits.Emulated;

    // ---- row kernels ----

    // A subgroup's row keeps at most 32 elements an invocation in registers (softmax_backward's
    // keep bits fill one uint): T5's 612-key rows over NVIDIA's 32 lanes take 20.
    internal const int MaxCachedPerSubgroupRow = 32;

    /// <summary>Softmax rows short enough go to one subgroup each (<see cref="GpuOptions.SubgroupRows"/>,
    /// on devices whose subgroups have at least 4 invocations).</summary>
    public bool SubgroupRows => Options.SubgroupRows && Capabilities.SubgroupSize >= 4;

    /// <summary>The SUBGROUP_ROWS constant of the kernels that may give a row a subgroup
    /// (shaders/include/reduce.glsl) for rows of <paramref name="length"/>: the device's subgroup
    /// size where <see cref="SubgroupRows"/> and a subgroup keeps the row in registers, else 0 (a
    /// workgroup per row).</summary>
    public int SubgroupRowsFor(int length)
    {
        if (Options.SubgroupRowsOverride is { } forced) return forced;
        int size = (int)Capabilities.SubgroupSize;
        return SubgroupRows && length <= MaxCachedPerSubgroupRow * size ? size : 0;
    }

    // ---- printing ----

    /// <summary>Every choice of the plan, per-product and per-attention rules by their parameters.</summary>
    public JsonObject ToJson()
    {
        var json = new JsonObject
        {
            ["device"] = Capabilities.Name,
            ["adopted"] = Adopted,
            ["plansForGpu"] = PlansForGpu,
            ["sliceFill"] = SliceFill,
            ["activations"] = Activations.Name(),
            ["matrixUnitsRequested"] = Options.MatrixUnits.ToString().ToLowerInvariant(),
            ["matrixUnits"] = MatrixUnits.ToString().ToLowerInvariant(),
            ["matrixUnitsSubgroupSize"] = MatrixUnits == MatrixUnits.None ? null : MatrixUnitsSubgroupSize,
            ["matrixUnitsSubgroupPinned"] = MatrixUnits == MatrixUnits.None ? null : MatrixUnitsSubgroupPinned,
            ["matrixUnitsFragment"] = MatrixUnits == MatrixUnits.None ? null : $"{MatrixUnitsFragment.M}x{MatrixUnitsFragment.N}x{MatrixUnitsFragment.K}",
            ["matrixUnitsOperands"] = MatrixUnits == MatrixUnits.None ? null : MatrixUnitsOperands.ToString().ToLowerInvariant(),
            ["matrixUnitsAllProducts"] = MatrixUnitsAllProducts,
            ["storedWeights"] = new JsonObject
            {
                ["fp16"] = StoredPrecision(WeightPrecision.Fp16).Name(),
                ["bf16"] = StoredPrecision(WeightPrecision.Bf16).Name(),
                ["int8"] = StoredPrecision(WeightPrecision.Int8).Name(),
            },
            ["portableProduct"] = new JsonObject
            {
                ["forcedTiling"] = ForcedPortableTiling,
                ["rule"] = PortableRule,
                ["tilings"] = PortableRule == "streamed"
                    ? new JsonObject { ["all"] = Named(MatMulTiling.Streamed) }
                    : new JsonObject
                    {
                        [$"rows <= {MatMulTiling.FewRows}"] = Named(MatMulTiling.StagedSmall),
                        [$"columns <= {MatMulTiling.FewColumns}"] = Named(MatMulTiling.StagedNarrow),
                        [$"fewer than {MatMulTiling.LargeTilesWanted} blocks of {MatMulTiling.Staged.BlockM}x{MatMulTiling.Staged.BlockN}"] = Named(MatMulTiling.StagedSmall),
                        ["otherwise"] = Named(MatMulTiling.GpuDefault(Capabilities)),
                    },
            },
            ["matrixUnitsProduct"] = MatrixUnits == MatrixUnits.None ? null : new JsonObject
            {
                ["forcedTiling"] = ForcedMatrixUnitsTiling,
                ["kernel"] = MatMulKernel.MatrixUnitsProductShader(MatrixUnits, Bf16Fragments),
                ["workgroupScopeKernel"] = MatrixUnits == MatrixUnits.Nv2 ? Nv2MatMulShader : null,
                ["tilings"] = SubgroupScopeTilings(),
                ["workgroupScopeTilings"] = MatrixUnits == MatrixUnits.Nv2 ? WorkgroupScopeTilings() : null,
            },
            ["tunesProducts"] = TunesProducts,
            ["halfCopies"] = HalfCopies ? new JsonObject { ["minOtherDimension"] = HalfCopyMinOther } : null,
            ["attention"] = new JsonObject
            {
                ["fusedByDefaultFromScoresPerHead"] = FusesLargeAttention ? FuseFromScoresPerHead : null,
                ["fusedWhereScoresExceedBytes"] = MaxBindingBytes,
                ["fusedOnMatrixUnits"] = FusedAttentionOnMatrixUnits,
                ["forcedMatrixUnitsTiling"] = FusedAttentionOnMatrixUnits ? Options.MatrixUnitsFusedAttentionTiling : null,
                ["matrixUnitsSubgroupSize"] = FusedAttentionOnMatrixUnits ? FusedAttentionSubgroupSize : null,
            },
            ["rowKernels"] = new JsonObject
            {
                ["localSize"] = RowLocalSize,
                ["subgroupRowsUpTo"] = SubgroupRows ? MaxCachedPerSubgroupRow * (int)Capabilities.SubgroupSize : null,
            },
            ["pipelineStatistics"] = PipelineStatistics,
            // A portability driver's device (MoltenVK), created with VK_KHR_portability_subset, and what it lacks.
            ["portabilitySubset"] = Capabilities.PortabilitySubset
                ? new JsonObject { ["unsupported"] = new JsonArray([.. Capabilities.PortabilitySubsetUnsupported.Select(n => JsonValue.Create(n))]) }
                : null,
            ["memory"] = new JsonObject
            {
                ["capBytes"] = MemoryCapBytes,
                ["heapBudgets"] = MemoryBudget,
                ["budgetMargin"] = MemoryBudget ? Options.MemoryBudgetMargin : null,
            },
        };
        return json;
    }

    static JsonObject Named(MatMulTiling t) => new() { ["name"] = MatMulTiling.NameOf(t), ["tiling"] = t.Text };

    JsonObject SubgroupScopeTilings()
    {
        if (MatrixUnitsOneTile) return new JsonObject { ["all (a CPU device's units)"] = MatrixUnitsTiling.OneTile.Text };
        long limit = Capabilities.MaxComputeSharedMemorySize;
        string Fitting(MatrixUnitsTiling t) => (t.SharedBytes <= limit ? t : MatrixUnitsTiling.Small.SharedBytes <= limit ? MatrixUnitsTiling.Small : MatrixUnitsTiling.Minimal).Text;
        return new JsonObject
        {
            [$"fewer than {MatrixUnitsTiling.FewBlocks} blocks of {MatrixUnitsTiling.Default.BlockM}x{MatrixUnitsTiling.Default.BlockN}"] = Fitting(MatrixUnitsTiling.Small),
            [$"columns <= {MatrixUnitsTiling.Narrow.BlockN}"] = Fitting(MatrixUnitsTiling.Narrow),
            ["otherwise"] = Fitting(MatrixUnitsTiling.Default),
        };
    }

    JsonObject WorkgroupScopeTilings()
    {
        string Fitting(MatrixUnitsTiling t) => (t.FitsWorkgroupScope(Capabilities) ? t : MatrixUnitsTiling.WorkgroupCandidates.First(c => c.FitsWorkgroupScope(Capabilities))).Text;
        return new JsonObject
        {
            [$"fewer than {MatrixUnitsTiling.FewBlocks} blocks of {MatrixUnitsTiling.WorkgroupLarge.BlockM}x{MatrixUnitsTiling.WorkgroupLarge.BlockN}"] = Fitting(MatrixUnitsTiling.WorkgroupSmall),
            [$"columns <= {MatrixUnitsTiling.WorkgroupNarrow.BlockN}"] = Fitting(MatrixUnitsTiling.WorkgroupNarrow),
            [$"columns <= {MatrixUnitsTiling.WorkgroupMedium.BlockN}"] = Fitting(MatrixUnitsTiling.WorkgroupMedium),
            ["otherwise"] = Fitting(MatrixUnitsTiling.WorkgroupLarge),
        };
    }

    /// <summary><see cref="ToJson"/> as indented text.</summary>
    public override string ToString() => ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
