namespace VkPrompt.Runtime.Kernels;

/// <summary>The matrix product of <see cref="MatMulSpec"/> on the device.</summary>
internal static class MatMulKernel
{
    // C is ReadWrite, not Write: an accumulating product reads it first. After C, the epilogue's
    // addend D (the gate's a), dropout seed and the gate's hidden H (include/matmul_epilogue.glsl),
    // which a product without them binds C in place of, never read nor written.
    static readonly KernelLayout Layout = new([Access.Read, Access.Read, Access.ReadWrite, Access.Read, Access.Read, Access.Write], 104);
    // matmul_int8.comp: B's row scales at binding 3, D, the seed and H after them.
    static readonly KernelLayout Int8Layout = new([Access.Read, Access.Read, Access.ReadWrite, Access.Read, Access.Read, Access.Read, Access.Write], 104);
    // matmul_half.comp and the matrix units' subgroup-scope kernels (matmul_coopmat*.comp): A, an
    // activation B and C may each be 16-bit activations, D and H as C is, and the seed's binding
    // holds C where there is no dropout.
    static readonly KernelLayout HalfLayout = Layout with { HalfBindings = 0b111111 };
    // matmul_int8_half.comp and matmul_coopmat_int8*.comp: A, C, D, the seed's placeholder and H
    // may be; B is the int8 table, its scales fp32.
    static readonly KernelLayout Int8HalfLayout = Int8Layout with { HalfBindings = 0b1110101 };

    // shaders/include/matmul_push.glsl, the block every product kernel declares, field for field
    // (MatMulPushTests compares them).
    internal readonly record struct Push(
        uint M, uint N, uint K, uint Batch1, uint Batch2,
        uint AOffset, uint AStrideBatch1, uint AStrideBatch2, uint AStrideM, uint AStrideK,
        uint BOffset, uint BStrideBatch1, uint BStrideBatch2, uint BStrideK, uint BStrideN,
        uint COffset, uint CStrideBatch1, uint CStrideBatch2, uint CStrideM,
        float Alpha, uint Accumulate,
        uint DropThreshold, float DropScale, uint DropStream,
        uint GateActivation, uint KeepsC)
    {
        /// <summary>The spec's fields, with the epilogue's dropout (threshold 0: none) and the
        /// gate's activation and whether C keeps the product.</summary>
        public static Push From(in MatMulSpec s, uint dropThreshold = 0, float dropScale = 1f, uint dropStream = 0,
                                GateActivation gateActivation = default, bool keepsC = true) => new(
            (uint)s.M, (uint)s.N, (uint)s.K, (uint)s.Batch1, (uint)s.Batch2,
            (uint)s.AOffset, (uint)s.AStrideBatch1, (uint)s.AStrideBatch2, (uint)s.AStrideM, (uint)s.AStrideK,
            (uint)s.BOffset, (uint)s.BStrideBatch1, (uint)s.BStrideBatch2, (uint)s.BStrideK, (uint)s.BStrideN,
            (uint)s.COffset, (uint)s.CStrideBatch1, (uint)s.CStrideBatch2, (uint)s.CStrideM,
            s.Alpha, s.Accumulate ? 1u : 0u,
            dropThreshold, dropScale, dropStream,
            (uint)gateActivation, keepsC ? 1u : 0u);
    }

    /// <summary>The operands of <paramref name="s"/>'s epilogue for a product run apart from its
    /// step (timed by the tuner and the benchmarks, checked by <c>bench matmul</c>): C's own buffer
    /// as D, so that it reads and writes C as an accumulating product does; with the gate, C's own
    /// buffer as the gate a and the hidden H too, C kept: it reads and writes what a training
    /// step's gate does, C left holding H (which is why <see cref="Diagnostics.ProductBench.Check"/>
    /// checks a gate's product without it); the relu's none. Where the spec drops
    /// (<see cref="MatMulSpec.EpilogueDropout"/>), the mask <see cref="BenchDropout"/> of
    /// <paramref name="seed"/>, which holds <see cref="MatMulOperands.DropoutSeed"/>. Null where
    /// the spec has no epilogue.</summary>
    internal static MatMulEpilogueOperands<GpuBuffer>? OntoC(in MatMulSpec s, GpuBuffer c, GpuBuffer seed)
    {
        DropoutMask<GpuBuffer>? mask = s.EpilogueDropout ? new(BenchDropout, seed, 0) : null;
        return s.Epilogue switch
        {
            MatMulEpilogue.None => null,
            MatMulEpilogue.Gate => MatMulEpilogueOperands<GpuBuffer>.Gated(c, new MatMulGate<GpuBuffer>(c, GateActivation.GeluTanh, KeepsProduct: true), mask),
            MatMulEpilogue.Relu => MatMulEpilogueOperands<GpuBuffer>.Relu(mask),
            _ => MatMulEpilogueOperands<GpuBuffer>.Residual(c, mask),
        };
    }

    /// <summary>The dropout rate of <see cref="OntoC"/>'s mask: T5's.</summary>
    internal const float BenchDropout = 0.1f;

    /// <summary>The push constants of <paramref name="s"/> and the buffers bound after C: the
    /// epilogue's addend (or gate), seed and hidden, or C in their place where the product has no
    /// epilogue or none of them (the relu reads no addend), no dropout or no gate. The spec's <see cref="MatMulSpec.Epilogue"/> says which
    /// operands there are; the addend (gate) and hidden must be stored as C is and hold every
    /// element C's range spans.</summary>
    /// <exception cref="ArgumentException">operands given for another epilogue than the spec's,
    /// or missing for it, or an addend, hidden or seed that does not fit.</exception>
    static (Push Push, GpuBuffer D, GpuBuffer Seed, GpuBuffer H) Finish(GpuBuffer c, in MatMulSpec s, MatMulEpilogueOperands<GpuBuffer>? epilogue)
    {
        if (s.Epilogue != (epilogue?.Kind ?? MatMulEpilogue.None))
            throw new ArgumentException(epilogue is { } given
                ? $"operands of the {given.Kind} epilogue given for a product whose spec has {(s.Epilogue == MatMulEpilogue.None ? "no epilogue" : $"the {s.Epilogue} epilogue")}"
                : $"the {s.Epilogue} epilogue needs its operands", nameof(epilogue));
        if (epilogue is not { } e) return (Push.From(s), c, c, c);
        long cExtent = s.Extents().C;
        var cStorage = s.CStorage;
        // what: the operand as a message names it, then how it is accessed.
        void Fits(string what, string access, GpuBuffer buffer)
        {
            if (buffer.Storage != cStorage)
                throw new ArgumentException($"the epilogue's {what} {buffer.Name} stores {buffer.Storage.Name()}, but C is {cStorage.Name()}: {access} as C is", nameof(epilogue));
            if (buffer.StoredElements < cExtent)
                throw new ArgumentException($"the epilogue's {what} {buffer.Name} holds {buffer.StoredElements} elements, but C's range spans {cExtent}", nameof(epilogue));
        }
        if (e.Gate is { } gate)
        {
            Fits("gate", "a is read", e.Addend!);
            Fits("hidden", "H is written", gate.Hidden);
        }
        else if (e.Addend is { } addend) Fits("addend", "D is read", addend);
        var (threshold, scale, seed) = DropoutMasks.Check("matmul", e.Dropout, cExtent);
        return (Push.From(s, threshold, scale, e.Dropout?.Stream ?? 0, e.Gate?.Activation ?? default, e.Gate?.KeepsProduct ?? true),
                e.Addend ?? c, seed ?? c, e.Gate?.Hidden ?? c);
    }

    /// <summary>Appends C = Alpha·A·B (+ C) as described by <paramref name="s"/>, after checking
    /// it against the buffers' lengths. A and B may be the same buffer; C must not overlap the
    /// ranges of A or B it is computed from. B, the frozen weight of a layer, may be stored as
    /// fp16 or bf16 halves, or as int8 with one scale per row of its table in
    /// <paramref name="bScales"/> (<paramref name="bPrecision"/>; offsets and strides still count
    /// elements); it is widened to fp32 as it is loaded. A, an activation B and C may be 16-bit
    /// activations, as the spec's storages say (which must be their buffers'): widened as they are
    /// loaded, C narrowed as it is stored; the sums stay fp32.</summary>
    /// <remarks>Where the context uses the matrix units, a product with 16-bit B, or int8 B read
    /// as A·Bᵀ (any B with <see cref="DevicePlan.MatrixUnitsAllProducts"/>), runs on the matrix
    /// units instead, with A and an fp32 B rounded to fp16 (saturating at ±65504), or both
    /// operands to bf16 where the plan's fragments are bf16 (<see cref="DevicePlan.MatrixUnitsOperands"/>),
    /// and fp32 sums (<see cref="DevicePlan.OnMatrixUnits(in MatMulSpec, WeightPrecision)"/>).
    /// With <see cref="MatMulEpilogue.Residual"/> in the spec, <paramref name="epilogue"/> gives
    /// its addend and dropout: C = D + dropout(Alpha·A·B); with <see cref="MatMulEpilogue.Gate"/>,
    /// the gate a, the hidden H and its dropout: H = dropout(act(a)·Alpha·A·B); with
    /// <see cref="MatMulEpilogue.Relu"/>, its dropout: C = dropout(relu(Alpha·A·B)) (<see cref="MatMulEpilogue"/>).</remarks>
    /// <exception cref="GpuException">B is 16-bit and the device lacks 16-bit storage.</exception>
    public static void Run(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, WeightPrecision bPrecision = WeightPrecision.Fp32,
                           GpuBuffer? bScales = null, MatMulEpilogueOperands<GpuBuffer>? epilogue = null)
    {
        // The tiling is chosen (and tuned) for a dropping product apart, whoever made the spec.
        var spec = s with { EpilogueDropout = epilogue?.Dropout is { Rate: > 0 } };
        Choose(g.Context, spec, bPrecision).Append(g, a, b, c, spec, bPrecision, bScales, epilogue);
    }

    /// <summary>The kernel and tiling <see cref="Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision, GpuBuffer?, MatMulEpilogueOperands{GpuBuffer}?)"/>
    /// and <see cref="Selection"/> use: the plan's (<see cref="DevicePlan.Product"/>), with this
    /// context's tunings.</summary>
    internal static MatMulChoice Choose(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision) =>
        context.Plan.Product(s, bPrecision, context.MatMulTunings);

    /// <summary>The product on the matrix units (or their emulation) with tiling <paramref name="t"/>.
    /// <paramref name="halfA"/>, <paramref name="halfB"/>: whether it reads a 16-bit copy of an
    /// fp32 A, or of an fp32 B, made first (<see cref="HalfCopies"/>), rather than the operand
    /// itself; null leaves it to <see cref="DevicePlan.HalvesA"/> and <see cref="DevicePlan.HalvesB"/>.
    /// Operands stored in 16 bits (<see cref="MatMulSpec.AStorage"/>, <see cref="MatMulSpec.BStorage"/>)
    /// are read straight, never copied, and a 16-bit C is narrowed as it is stored.
    /// <paramref name="bScales"/>: an int8 B's row scales; int8 B must be read as A·Bᵀ.</summary>
    /// <exception cref="ArgumentException">The spec's storages are not the buffers' (<see cref="CheckOperands"/>).</exception>
    internal static void RunOnMatrixUnits(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, MatrixUnitsTiling t, WeightPrecision bPrecision,
                                    bool? halfA = null, bool? halfB = null, GpuBuffer? bScales = null, MatMulEpilogueOperands<GpuBuffer>? epilogue = null)
    {
        if (!g.Context.UsesMatrixUnits) throw new GpuException("the matrix-unit product needs a context that uses them (GpuContext.UsesMatrixUnits)");
        if (bPrecision == WeightPrecision.Int8 && !g.Context.Plan.OnMatrixUnits(s, bPrecision))
            throw new ArgumentException("an int8 B goes to the matrix units only read as A·Bᵀ (DevicePlan.OnMatrixUnits)", nameof(s));
        CheckOperands(g.Context, a, b, c, s, bPrecision);
        var bRead = ReadAs(s, bPrecision);
        CheckScales(s, bPrecision, bScales);
        var spec = s;
        var (aExtent, bExtent, _) = s.Extents();
        bool workgroupScope = OnWorkgroupScope(g.Context, s, bPrecision);
        var (copyA, copyB) = CopiedOperands(g.Context.Plan, s, bPrecision, halfA, halfB);
        // A copy is an fp16 operand like any other, read from its first element.
        if (copyA)
        {
            a = g.State<HalfCopies>().Of(g, HalfCopies.Operand.A, a, s.AOffset, aExtent - s.AOffset);
            spec = spec with { AOffset = 0, AStorage = ActivationPrecision.Fp16 };
        }
        if (copyB)
        {
            b = g.State<HalfCopies>().Of(g, HalfCopies.Operand.B, b, s.BOffset, bExtent - s.BOffset);
            spec = spec with { BOffset = 0 };
            bRead = WeightPrecision.Fp16;
        }
        var (push, d, seed, h) = Finish(c, spec, epilogue);
        if (workgroupScope) AppendWorkgroupScope(g, a, b, c, spec, t, push);
        else AppendSubgroupScope(g, a, b, c, spec, t, bRead, bScales, push, d, seed, h);
    }

    /// <summary>How the subgroup-scope kernel reads B: an activation B kept in 16 bits as the
    /// 16-bit weight of the same bits (the fill widens and rounds both alike), any other as
    /// <paramref name="bPrecision"/> says.</summary>
    static WeightPrecision ReadAs(in MatMulSpec s, WeightPrecision bPrecision) => s.BStorage switch
    {
        ActivationPrecision.Bf16 => WeightPrecision.Bf16,
        ActivationPrecision.Fp16 => WeightPrecision.Fp16,
        _ => bPrecision,
    };

    internal static bool OnWorkgroupScope(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision) => context.Plan.OnWorkgroupScope(s, bPrecision);

    /// <summary>Which operands a matrix-unit product reads as fp16 copies made first
    /// (<see cref="HalfCopies"/>): A where it is fp32, and B where it is fp32, whether a weight or
    /// an activation. Operands kept in 16 bits are never copied: the subgroup-scope kernel reads
    /// them straight (and the workgroup-scope kernel never gets them, <see cref="DevicePlan.OnWorkgroupScope"/>).
    /// The workgroup-scope kernel multiplies what it loads, so both its operands are copies
    /// whatever the switches ask of the other kernel; the subgroup-scope kernel's follow
    /// <paramref name="halfA"/> and <paramref name="halfB"/> where given, else the plan
    /// (<see cref="DevicePlan.HalvesA"/>, <see cref="DevicePlan.HalvesB"/>). The memory plan
    /// counts the copies by it too. The copies are fp16, so with bf16 fragments there are none,
    /// whatever the switches ask: the kernel rounds fp32 operands to bf16 as it stages them.</summary>
    internal static (bool A, bool B) CopiedOperands(DevicePlan plan, in MatMulSpec s, WeightPrecision bPrecision, bool? halfA = null, bool? halfB = null)
    {
        if (plan.Bf16Fragments) return (false, false);
        bool workgroupScope = plan.OnWorkgroupScope(s, bPrecision);
        bool a = s.AStorage == ActivationPrecision.Fp32 && (workgroupScope ? DevicePlan.Used(s) > 0 : halfA ?? plan.HalvesA(s));
        bool b = bPrecision == WeightPrecision.Fp32 && s.BStorage == ActivationPrecision.Fp32
                 && (workgroupScope ? DevicePlan.Used(s) > 0 : halfB ?? plan.HalvesB(s));
        return (a, b);
    }

    // No epilogue reaches it (DevicePlan.OnWorkgroupScope): C fills the bindings after it.
    static void AppendWorkgroupScope(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, MatrixUnitsTiling t, in Push push)
    {
        var k = g.Context.MatrixUnitsKernel(DevicePlan.Nv2MatMulShader, Layout, (int)g.Context.Capabilities.SubgroupSize * t.WarpsM * t.WarpsN,
                                 t.BlockM, t.BlockN, t.SharedK, s.AStrideK == 1 ? 1 : 0, s.BStrideK == 1 ? 1 : 0);
        uint z = (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ);
        g.Dispatch(k, (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM), z), push, a, b, c, c, c, c);
    }

    // bPrecision: how the kernel reads B (ReadAs, or fp16 for a copy).
    static void AppendSubgroupScope(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, MatrixUnitsTiling t, WeightPrecision bPrecision,
                                    GpuBuffer? bScales, in Push push, GpuBuffer d, GpuBuffer seed, GpuBuffer h)
    {
        uint subgroup = g.Context.Plan.MatrixUnitsSubgroupSize;
        bool int8 = bPrecision == WeightPrecision.Int8;
        var k = g.Context.MatrixUnitsKernel(MatrixUnitsShader(g.Context, bPrecision), int8 ? Int8HalfLayout : HalfLayout, (int)subgroup * t.WarpsM * t.WarpsN, (int)subgroup,
                                 t.WarpsM, t.WarpsN, t.TilesM, t.TilesN, t.SharedK, bPrecision == WeightPrecision.Bf16 ? 1 : 0,
                                 Fetch(s.AStrideK, (s.M, s.AStrideM), (s.K, s.AStrideK), s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2)),
                                 Fetch(s.BStrideK, (s.N, s.BStrideN), (s.K, s.BStrideK), s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2)),
                                 Aligned(s.COffset, (s.Batch1, s.CStrideBatch1), (s.Batch2, s.CStrideBatch2), (s.M, s.CStrideM)) ? 1 : 0,
                                 bPrecision == WeightPrecision.Fp32 ? 1 : 0, s.AStorage.ShaderCode(), s.CStorage.ShaderCode(), (int)s.Epilogue);
        uint z = (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ);
        var groups = (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM), z);
        if (int8) g.Dispatch(k, groups, push, a, b, c, bScales!, d, seed, h);
        else g.Dispatch(k, groups, push, a, b, c, d, seed, h);
    }

    /// <summary>The portable product (include/matmul.glsl) with tiling <paramref name="t"/>: A, an
    /// activation B (<paramref name="bPrecision"/> fp32) and C each stored as their buffers'
    /// <see cref="GpuBuffer.Storage"/>, which must be the spec's <see cref="MatMulSpec.AStorage"/>,
    /// <see cref="MatMulSpec.BStorage"/> and <see cref="MatMulSpec.CStorage"/> (16-bit ones widened
    /// on load, C narrowed on store, the sums fp32); a weight B as <paramref name="bPrecision"/>,
    /// with an int8 B's row scales in <paramref name="bScales"/>.</summary>
    /// <exception cref="ArgumentException">a buffer's storage differs from the spec's, an operand
    /// lies outside its buffer, or the scales do not fit B.</exception>
    /// <exception cref="GpuException">a 16-bit operand on a device without 16-bit storage.</exception>
    internal static void Run(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, MatMulTiling t,
                             WeightPrecision bPrecision = WeightPrecision.Fp32, GpuBuffer? bScales = null, MatMulEpilogueOperands<GpuBuffer>? epilogue = null)
    {
        CheckOperands(g.Context, a, b, c, s, bPrecision);
        var (push, d, seed, h) = Finish(c, s, epilogue);
        var (aVec, bVec) = VectorLoads(s, t);
        // The vec4 views index whole groups of four elements, whatever their width, so the
        // alignment VectorLoads checks holds for halves and bytes too.
        var groups = (Grid.Div(s.N, t.BlockN), Grid.Div(s.M, t.BlockM),
                      // Batches past the device's z limit are looped over inside the shader.
                      (uint)Math.Min((long)s.Batch1 * s.Batch2, g.Context.Capabilities.MaxWorkGroupCountZ));
        CheckScales(s, bPrecision, bScales);
        string shader = PortableShader(s, bPrecision);
        // matmul.comp and matmul_int8.comp declare no storage constants (constant_id 7 to 9),
        // which Vulkan then ignores (they are fp32's code for them): the epilogue's follows them
        // in every build.
        var layout = shader switch { "matmul" => Layout, "matmul_half" => HalfLayout, "matmul_int8" => Int8Layout, _ => Int8HalfLayout };
        var k = g.Context.Kernel(shader, layout, t.LocalX, t.LocalY, t.TileM, t.TileN, t.SharedK, aVec, bVec,
                                 s.AStorage.ShaderCode(), BStorageCode(s, bPrecision), s.CStorage.ShaderCode(), (int)s.Epilogue);
        if (bPrecision == WeightPrecision.Int8) g.Dispatch(k, groups, push, a, b, c, bScales!, d, seed, h);
        else g.Dispatch(k, groups, push, a, b, c, d, seed, h);
    }

    /// <summary>The portable product's shader for <paramref name="s"/> with B stored as
    /// <paramref name="bPrecision"/>: matmul where every operand is fp32, matmul_half where any of
    /// A, B and C is 16-bit (a device without 16-bit storage cannot load a module that declares a
    /// 16-bit buffer, so the fp32 product has a build of its own), matmul_int8 for an int8 B with
    /// fp32 A and C, matmul_int8_half for an int8 B with a 16-bit A or C.</summary>
    internal static string PortableShader(in MatMulSpec s, WeightPrecision bPrecision)
    {
        bool halfAC = s.AStorage != ActivationPrecision.Fp32 || s.CStorage != ActivationPrecision.Fp32;
        return bPrecision switch
        {
            WeightPrecision.Int8 => halfAC ? "matmul_int8_half" : "matmul_int8",
            WeightPrecision.Fp32 when !halfAC && s.BStorage == ActivationPrecision.Fp32 => "matmul",
            _ => "matmul_half",
        };
    }

    // matmul_half.comp's B_STORAGE: a 16-bit weight's form, else an activation B's storage, in
    // include/storage.glsl's codes.
    static int BStorageCode(in MatMulSpec s, WeightPrecision bPrecision) => bPrecision switch
    {
        WeightPrecision.Fp16 => ActivationPrecision.Fp16.ShaderCode(),
        WeightPrecision.Bf16 => ActivationPrecision.Bf16.ShaderCode(),
        _ => s.BStorage.ShaderCode(),
    };

    /// <summary>Checks that each buffer stores its elements as the spec says (A, C and an
    /// activation B by <see cref="GpuBuffer.Storage"/>; a weight B, whose form
    /// <paramref name="bPrecision"/> names, has fp32 <see cref="MatMulSpec.BStorage"/>), that the
    /// device keeps such storage, and that every element the product touches lies inside its
    /// buffer, each counted by its storage (<see cref="MatMulSpec.Validate"/>).</summary>
    /// <exception cref="ArgumentException">a storage differs from the spec's, or an operand lies
    /// outside its buffer.</exception>
    /// <exception cref="GpuException">the device cannot keep a 16-bit operand.</exception>
    internal static void CheckOperands(GpuContext context, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, WeightPrecision bPrecision)
    {
        if (bPrecision != WeightPrecision.Fp32 && s.BStorage != ActivationPrecision.Fp32)
            throw new ArgumentException($"B is a {bPrecision.Name()} weight, whose form its weight precision names, so its BStorage must be fp32, not {s.BStorage.Name()}", nameof(s));
        static void Check(string operand, GpuBuffer buffer, ActivationPrecision expected)
        {
            if (buffer.Storage != expected)
                throw new ArgumentException($"matmul operand {operand}: the spec says {expected.Name()} ({operand}Storage), but its buffer {buffer.Name} stores {buffer.Storage.Name()}", operand.ToLowerInvariant());
        }
        Check("A", a, s.AStorage);
        Check("B", b, s.BStorage);
        Check("C", c, s.CStorage);
        bPrecision.Require(context.Capabilities);
        foreach (var storage in new[] { s.AStorage, s.BStorage, s.CStorage }) storage.Require(context.Capabilities);
        s.Validate(a.StoredElements, bPrecision == WeightPrecision.Fp32 ? b.StoredElements : b.Bytes / bPrecision.ElementBytes(), c.StoredElements);
    }

    /// <summary>The int8 kernels find an element's row, and so its scale, as its index over the
    /// table's row length, which they read off the strides: the table must be read along its rows
    /// (bStrideK = 1, A·Bᵀ) or across them (bStrideN = 1, A·B), the other stride the row length
    /// (both 1: one column). Scales go with int8 alone.</summary>
    static void CheckScales(in MatMulSpec s, WeightPrecision bPrecision, GpuBuffer? scales)
    {
        if (bPrecision != WeightPrecision.Int8)
        {
            if (scales is not null) throw new ArgumentException($"row scales belong to int8 weights, not {bPrecision.Name()}", nameof(scales));
            return;
        }
        if (scales is null) throw new ArgumentException("an int8 B needs its row scales", nameof(scales));
        long rows = Int8RowsRead(s);
        if (scales.Length<float>() < rows)
            throw new ArgumentException($"the int8 B's product reads {rows} rows, but its scales hold {scales.Length<float>()}", nameof(scales));
    }

    /// <summary>How many rows of an int8 B (and so of its scales) <paramref name="s"/> reads.
    /// Both strides 1 read a table one column wide.</summary>
    internal static long Int8RowsRead(in MatMulSpec s)
    {
        if (s.BStrideK != 1 && s.BStrideN != 1)
            throw new ArgumentException($"an int8 B is read along or across its rows (one of its strides 1), not with strides k {s.BStrideK}, n {s.BStrideN}", nameof(s));
        long rowLength = s.BStrideK == 1 ? s.BStrideN : s.BStrideK;
        return (s.Extents().B + rowLength - 1) / rowLength;
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
    /// <see cref="Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision, GpuBuffer?, MatMulEpilogueOperands{GpuBuffer}?)"/>
    /// uses for <paramref name="s"/> on <paramref name="context"/>, e.g. ("matmul_half", "16x16x8x8x8"):
    /// what <c>vkprompt bench matmul</c> reports, from the same choices Run makes.</summary>
    public static (string Kernel, string Tiling) Selection(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision = WeightPrecision.Fp32)
    {
        var choice = Choose(context, s, bPrecision);
        return (choice.Kernel(context, s, bPrecision), choice.Tiling);
    }

    /// <summary>The build of a matrix-unit shader (shaders/NAME.comp for NV, NAME_khr.comp,
    /// NAME_emulated.comp) that the context's <see cref="DevicePlan.MatrixUnits"/> runs at subgroup scope.
    /// A context through VK_NV_cooperative_matrix2 runs the KHR builds beside its workgroup-scope kernel.</summary>
    internal static string MatrixUnitsShader(GpuContext context, string name = "matmul_coopmat") => MatrixUnitsShader(context.Plan.MatrixUnits, name);

    /// <summary>The subgroup-scope product's build for a B stored as <paramref name="bPrecision"/>:
    /// matmul_coopmat_int8* binds an int8 B's scales, matmul_coopmat* takes every other B; with
    /// the fragments the plan chose (<see cref="DevicePlan.MatrixUnitsOperands"/>).</summary>
    internal static string MatrixUnitsShader(GpuContext context, WeightPrecision bPrecision) =>
        MatrixUnitsProductShader(context.Plan.MatrixUnits, context.Plan.Bf16Fragments, bPrecision == WeightPrecision.Int8 ? "matmul_coopmat_int8" : "matmul_coopmat");

    /// <summary>The product's build <see cref="MatrixUnitsShader(MatrixUnits, string)"/> names, its
    /// bf16-fragment variant (NAME_khr_bf16.comp, NAME_emulated_bf16.comp) where <paramref name="bf16"/>.</summary>
    internal static string MatrixUnitsProductShader(MatrixUnits units, bool bf16, string name = "matmul_coopmat") =>
        MatrixUnitsShader(units, name) + (bf16 ? "_bf16" : "");

    /// <inheritdoc cref="MatrixUnitsShader(GpuContext, string)"/>
    internal static string MatrixUnitsShader(MatrixUnits units, string name = "matmul_coopmat") => units switch
    {
        MatrixUnits.Emulated => name + "_emulated",
        MatrixUnits.Khr or MatrixUnits.Nv2 => name + "_khr",
        _ => name,
    };

    /// <summary>Whether <paramref name="kernel"/>, as <see cref="Selection"/> names it, is a
    /// cooperative-matrix product (on the matrix units or emulated), which rounds A to fp16 (to
    /// bf16 in the *_bf16 builds).</summary>
    public static bool IsMatrixUnitsKernel(string kernel) =>
        kernel is "matmul_coopmat" or DevicePlan.KhrMatMulShader or DevicePlan.Nv2MatMulShader or "matmul_coopmat_emulated"
            or "matmul_coopmat_int8" or "matmul_coopmat_int8_khr" or "matmul_coopmat_int8_emulated"
            or DevicePlan.KhrBf16MatMulShader or "matmul_coopmat_emulated_bf16" or "matmul_coopmat_int8_khr_bf16" or "matmul_coopmat_int8_emulated_bf16";
}

/// <summary>A product's kernel and its tile shape: the portable product's (<see cref="Portable"/>)
/// or the matrix units' (<see cref="MatrixUnits"/>), exactly one of them set.</summary>
internal readonly record struct MatMulChoice
{
    public MatMulTiling? Portable { get; }
    public MatrixUnitsTiling? MatrixUnits { get; }

    /// <summary>The matrix units' tiling is for the workgroup-scope kernel (matmul_coopmat_nv2.comp).</summary>
    public bool WorkgroupScope { get; }

    public MatMulChoice(MatMulTiling portable) => Portable = portable;
    public MatMulChoice(MatrixUnitsTiling matrixUnits, bool workgroupScope = false) => (MatrixUnits, WorkgroupScope) = (matrixUnits, workgroupScope);

    /// <summary>The shader that runs <paramref name="s"/>, as a profile labels its dispatches.</summary>
    public string Kernel(GpuContext context, in MatMulSpec s, WeightPrecision bPrecision) =>
        WorkgroupScope ? DevicePlan.Nv2MatMulShader
        : MatrixUnits is not null ? MatMulKernel.MatrixUnitsShader(context, bPrecision)
        : MatMulKernel.PortableShader(s, bPrecision);

    /// <summary>The tile shape as the tiling variables spell it.</summary>
    public string Tiling => MatrixUnits?.Text ?? Portable!.Value.Text;

    /// <summary>Appends the product with this kernel and tiling (<paramref name="bScales"/>: an
    /// int8 B's row scales; <paramref name="epilogue"/>: the operands of the spec's epilogue).</summary>
    public void Append(CommandGraph g, GpuBuffer a, GpuBuffer b, GpuBuffer c, in MatMulSpec s, WeightPrecision bPrecision, GpuBuffer? bScales = null,
                       MatMulEpilogueOperands<GpuBuffer>? epilogue = null)
    {
        if (MatrixUnits is { } m) MatMulKernel.RunOnMatrixUnits(g, a, b, c, s, m, bPrecision, bScales: bScales, epilogue: epilogue);
        else MatMulKernel.Run(g, a, b, c, s, Portable!.Value, bPrecision, bScales, epilogue);
    }
}
