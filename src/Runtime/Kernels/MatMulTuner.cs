namespace VkPrompt.Runtime.Kernels;

/// <summary>
/// Measures which tiling runs each product fastest on this device, instead of trusting
/// <see cref="MatMulTiling.ForGpu"/>'s rule, which comes from an H100's timings and may be wrong on
/// other GPUs (docs/benchmarks.md). Opt-in (<see cref="GpuOptions.TuneMatMul"/>,
/// the CLI's VKPROMPT_MATMUL_TUNE=1); the trainer calls it with a step's products before recording the step,
/// since <see cref="MatMulKernel.Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision, GpuBuffer?, MatMulEpilogueOperands{GpuBuffer}?)"/>
/// only appends to a graph that runs later, when there is nothing left to choose.
/// </summary>
internal static class MatMulTuner
{
    /// <summary>Timed dispatches per candidate: the choice goes by their median, which one late
    /// or early dispatch does not move.</summary>
    const int Reps = 5;

    // Untimed running before the first candidate, so that the GPU's clocks are up (bench matmul's
    // default warm-up; DispatchTimer.Repeat says what an idle H100 did without one). From then on
    // the GPU hardly idles between candidates, and a short warm-up each keeps the clocks up.
    const double FirstWarmupMs = 100, WarmupMs = 10;

    /// <summary>Whether a step's products should be tuned: <see cref="GpuOptions.TuneMatMul"/>, on a
    /// GPU. A CPU device (lavapipe) runs the streamed variant, its one tiling (the staged ones ran
    /// 3.5x slower there), so there is nothing to choose.</summary>
    public static bool Enabled(GpuContext ctx) => ctx.Plan.TunesProducts;

    /// <summary>Times every candidate tiling of each product not tuned yet on
    /// <paramref name="ctx"/> (one per <see cref="MatMulShapeKey"/>: products that differ only in
    /// what selects no other kernel, such as alpha, share one), on scratch operands, and keeps the
    /// fastest for <see cref="MatMulKernel.Run(CommandGraph, GpuBuffer, GpuBuffer, GpuBuffer, in MatMulSpec, WeightPrecision, GpuBuffer?, MatMulEpilogueOperands{GpuBuffer}?)"/>
    /// and <see cref="MatMulKernel.Selection"/> to use on this context from then on. Logs one line
    /// per product (<see cref="GpuOptions.Log"/>) and returns what it measured. Skips products whose
    /// kernel has its tiling forced (<see cref="GpuOptions.MatMulTiling"/>, <see cref="GpuOptions.MatrixUnitsTiling"/>), which
    /// has fewer than two candidates that fit the device, or whose operand needs more than one
    /// binding (a weight that large is split, and its parts are other products). Call it outside
    /// any graph being recorded; it submits work of its own.</summary>
    public static IReadOnlyList<MatMulTuning> Tune(GpuContext ctx, IEnumerable<(MatMulSpec Spec, WeightPrecision B)> products) => Tune(ctx, products, time: null);

    /// <summary>What <see cref="Tune(GpuContext, IEnumerable{ValueTuple{MatMulSpec, WeightPrecision}})"/>
    /// measured for products like <paramref name="s"/> on <paramref name="ctx"/>; null where it
    /// has not tuned them.</summary>
    public static MatMulTuning? Find(GpuContext ctx, in MatMulSpec s, WeightPrecision b) => ctx.MatMulTunings.Find(s, b);

    /// <param name="ctx">the context whose tunings the results join.</param>
    /// <param name="products">the products to tune, each with the precision its B is read in.</param>
    /// <param name="time">times one candidate for one product, returning a time per rep (tests
    /// inject their own); null times it on the device.</param>
    internal static IReadOnlyList<MatMulTuning> Tune(GpuContext ctx, IEnumerable<(MatMulSpec Spec, WeightPrecision B)> products,
                                                     Func<MatMulSpec, WeightPrecision, MatMulChoice, IReadOnlyList<double>>? time)
    {
        long limit = Math.Min(ctx.MaxBindingBytes, ctx.Capabilities.MaxMemoryAllocationSize);
        var pending = new List<(MatMulSpec Spec, WeightPrecision B, List<MatMulChoice> Candidates)>();
        var keys = new HashSet<MatMulShapeKey>();
        foreach (var (spec, asked) in products)
        {
            asked.Require(ctx.Capabilities);
            foreach (var storage in new[] { spec.AStorage, spec.BStorage, spec.CStorage }) storage.Require(ctx.Capabilities);
            // Tuned as they will run: with B stored the way this context stores such weights.
            var b = ctx.Plan.StoredPrecision(asked);
            if (ctx.MatMulTunings.Find(spec, b) is not null || !keys.Add(MatMulShapeKey.Of(spec, b))) continue;
            var (aElems, bElems, cElems) = spec.Extents();
            long bBytes = b == WeightPrecision.Fp32 ? spec.BStorage.Bytes(bElems) : b.ElementBytes() * bElems;
            if (Math.Max(Math.Max(spec.AStorage.Bytes(aElems), spec.CStorage.Bytes(cElems)), bBytes) > limit) continue;
            var candidates = Candidates(ctx, spec, b);
            if (candidates.Count > 1) pending.Add((spec, b, candidates));
        }
        if (pending.Count == 0) return [];

        using var scratch = time is null ? new Scratch(ctx, pending.Select(p => (p.Spec, p.B))) : null;
        time ??= scratch!.Time;
        var results = new List<MatMulTuning>();
        foreach (var (spec, b, candidates) in pending)
        {
            var timed = candidates.Select(c => time(spec, b, c)).Select((t, i) => new MatMulTimedTiling(candidates[i].Tiling, DispatchTimer.Median(t), t.ToList())).ToList();
            // The first of equal medians: candidates come in a fixed order, so a tie always goes one way.
            int best = Enumerable.Range(0, timed.Count).MinBy(i => timed[i].MedianMs);
            var tuning = new MatMulTuning(spec, b, candidates[best].Kernel(ctx, spec, b), candidates[best].Tiling, timed) { Choice = candidates[best] };
            ctx.MatMulTunings.Add(tuning);
            results.Add(tuning);
            ctx.Options.Log?.Invoke($"matmul tuning: {Describe(spec, b)}: {tuning.Kernel} {tuning.Tiling}; median ms of {string.Join(", ", timed.Select(t => $"{t.Tiling} {t.MedianMs:F4}"))}");
        }
        return results;
    }

    /// <summary>The tilings a product may get: those of the kernel the switches chose for it that
    /// fit the device, none where a tiling variable forces one. The tuner never moves a product
    /// between the portable kernel and the matrix units, which round A to fp16: timings choose
    /// how fast a product runs, not how it rounds.</summary>
    static List<MatMulChoice> Candidates(GpuContext ctx, in MatMulSpec spec, WeightPrecision b)
    {
        var caps = ctx.Capabilities;
        if (ctx.Plan.OnMatrixUnits(spec, b))
        {
            if (ctx.Options.MatrixUnitsTiling is not null) return [];
            bool workgroupScope = MatMulKernel.OnWorkgroupScope(ctx, spec, b);
            return (workgroupScope ? MatrixUnitsTiling.WorkgroupCandidates : MatrixUnitsTiling.Candidates)
                .Where(t => t.Fits(ctx, workgroupScope)).Select(t => new MatMulChoice(t, workgroupScope)).ToList();
        }
        return ctx.Options.MatMulTiling is not null ? []
            : new[] { MatMulTiling.Staged, MatMulTiling.StagedDeep, MatMulTiling.StagedNarrow, MatMulTiling.StagedSmall }.Where(t => t.Fits(caps)).Select(t => new MatMulChoice(t)).ToList();
    }

    static string Describe(in MatMulSpec s, WeightPrecision b) =>
        $"{s.M}x{s.N}x{s.K} x{(long)s.Batch1 * s.Batch2} {(s.AStrideK == 1 ? "A" : "Aᵀ")}·{(s.BStrideN == 1 ? "B" : "Bᵀ")} " +
        $"(A {s.AStorage.Name()}, B {(b == WeightPrecision.Fp32 ? s.BStorage.Name() : b.Name())}, C {s.CStorage.Name()}){(s.Accumulate ? " +=" : "")}" +
        (s.Epilogue == MatMulEpilogue.None ? "" : $" {s.Epilogue.ToString().ToLowerInvariant()} epilogue{(s.EpilogueDropout ? " with dropout" : "")}");

    /// <summary>The products' operands (<see cref="MatMulOperandBuffers"/>): hashed values in
    /// [-1, 1), data as varied as a step's, since some GPUs move uniform data faster.</summary>
    sealed class Scratch(GpuContext ctx, IEnumerable<(MatMulSpec Spec, WeightPrecision B)> products) : IDisposable
    {
        readonly MatMulOperandBuffers operands = new(ctx, products, "tune");
        bool warm;

        public IReadOnlyList<double> Time(MatMulSpec spec, WeightPrecision p, MatMulChoice choice)
        {
            double warmup = warm ? WarmupMs : FirstWarmupMs;
            warm = true;
            var cBuffer = operands.C(spec);
            var epilogue = MatMulKernel.OntoC(spec, cBuffer, operands.Seed);
            var (ms, labels) = DispatchTimer.Repeat(ctx, g => choice.Append(g, operands.A(spec), operands.B(spec, p), cBuffer, spec, p, operands.Scales(p), epilogue), Reps, warmup);
            // The 16-bit copy of A that the first rep makes (the others read it) is the same for
            // every candidate tiling: only the products are compared.
            return labels is null ? ms : ms.Where((_, i) => labels[i] != ToHalfKernel.Shader).ToList();
        }

        public void Dispose() => operands.Dispose();
    }
}

/// <summary>One tiling as <see cref="MatMulTuner"/> timed it: as the tiling variables spell it,
/// the median and every timed dispatch, in milliseconds.</summary>
internal sealed record MatMulTimedTiling(string Tiling, double MedianMs, IReadOnlyList<double> TimesMs);

/// <summary>What <see cref="MatMulTuner"/> measured for one class of products: the product it
/// timed, its B's precision, the kernel, the fastest tiling (which the context uses for every
/// product of the class from then on) and each candidate's times.</summary>
internal sealed record MatMulTuning(MatMulSpec Spec, WeightPrecision B, string Kernel, string Tiling, IReadOnlyList<MatMulTimedTiling> Candidates)
{
    internal MatMulChoice Choice { get; init; }
}

/// <summary>What tells products apart for tuning: their sizes, the number of matrices, and
/// everything besides that selects another kernel or another variant of one (which stride of each
/// operand is 1 and whether its rows start on multiples of 4, which pick the vector loads of
/// <see cref="MatMulKernel.VectorLoads"/> and the fetches of the matrix units; whether C's rows
/// do; whether A, B and C are 16-bit: a 16-bit weight B or activation B alike, either runs
/// matmul_half and moves half the bytes), and whether C is read as well as written. Alpha and the
/// exact strides select nothing and are left out, and so does which 16-bit form an operand takes:
/// fp16 and bf16 run the same kernels, differing only in how a half is widened or narrowed, and a
/// context may store bf16 weights as fp16 (<see cref="DevicePlan.StoredPrecision"/>), so a tuning
/// found for either serves both. An int8 B runs kernels of its own (matmul_int8 and, with a
/// 16-bit A or C, matmul_int8_half), tuned apart. Each epilogue is a pipeline of its own (a
/// specialization constant), may read D as C is read when accumulating, and keeps the product off
/// the workgroup-scope kernel: tuned apart too, and a dropping one apart from one that does not
/// drop (on the matrix units it stores every tile through shared memory). The tunings live with their context and are
/// never persisted, so the key may change freely.</summary>
internal readonly record struct MatMulShapeKey(int M, int N, int K, long Batch, int A, int B, bool CAligned, bool HalfA, bool HalfB, bool HalfC, bool Int8B, bool Accumulate,
                                               MatMulEpilogue Epilogue, bool EpilogueDropout)
{
    public static MatMulShapeKey Of(in MatMulSpec s, WeightPrecision b) => new(
        s.M, s.N, s.K, (long)s.Batch1 * s.Batch2,
        Layout(s.AOffset, (s.Batch1, s.AStrideBatch1), (s.Batch2, s.AStrideBatch2), (s.M, s.AStrideM), (s.K, s.AStrideK)),
        Layout(s.BOffset, (s.Batch1, s.BStrideBatch1), (s.Batch2, s.BStrideBatch2), (s.N, s.BStrideN), (s.K, s.BStrideK)),
        MatMulKernel.Aligned(s.COffset, (s.Batch1, s.CStrideBatch1), (s.Batch2, s.CStrideBatch2), (s.M, s.CStrideM)),
        s.AStorage != ActivationPrecision.Fp32, b is WeightPrecision.Fp16 or WeightPrecision.Bf16 || s.BStorage != ActivationPrecision.Fp32,
        s.CStorage != ActivationPrecision.Fp32, b == WeightPrecision.Int8, s.Accumulate, s.Epilogue, s.EpilogueDropout);

    // Bits: 1 contiguous along k, 2 contiguous along m (or n), 4 runs along k start on multiples
    // of 4 (the offset and every other stride are), 8 runs along m (or n) do.
    static int Layout(int offset, (int, int) batch1, (int, int) batch2, (int Size, int Stride) mn, (int Size, int Stride) k) =>
        (k.Stride == 1 ? 1 : 0) | (mn.Stride == 1 ? 2 : 0) |
        (MatMulKernel.Aligned(offset, batch1, batch2, mn) ? 4 : 0) | (MatMulKernel.Aligned(offset, batch1, batch2, k) ? 8 : 0);
}

/// <summary>The products <see cref="MatMulTuner"/> has tuned on one context, by
/// <see cref="MatMulShapeKey"/>. The context owns it, since one device's timings say nothing of
/// another's, and it goes with the context.</summary>
internal sealed class MatMulTunings
{
    readonly Dictionary<MatMulShapeKey, MatMulTuning> tuned = new();

    public MatMulTuning? Find(in MatMulSpec s, WeightPrecision b) => tuned.GetValueOrDefault(MatMulShapeKey.Of(s, b));

    public void Add(MatMulTuning t) => tuned[MatMulShapeKey.Of(t.Spec, t.B)] = t;
}
