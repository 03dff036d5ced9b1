using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;

namespace VkPrompt.Diagnostics;

/// <summary>A product to measure: a name for messages, its spec, and the precision its B is
/// read in as asked (a weight's precision, fp32 for an activation); a 16-bit weight B is stored
/// the way the context stores such weights (<see cref="DevicePlan.StoredPrecision"/>). A, an
/// activation B and C are stored as the spec's storages say (<see cref="MatMulSpec.AStorage"/>,
/// <see cref="MatMulSpec.BStorage"/>, <see cref="MatMulSpec.CStorage"/>), as the step keeps them.</summary>
internal sealed record BenchProduct(string Name, MatMulSpec Spec, WeightPrecision B);

/// <summary>What <see cref="ProductBench.Run"/> found for one product. A skipped product has
/// only <see cref="Skipped"/>, the precision its B would be stored in and the tolerance its
/// kernel would have had.</summary>
/// <param name="Product">the product measured.</param>
/// <param name="B">the precision B was stored in on the context.</param>
/// <param name="Kernel">the shader that ran (<see cref="MatMulKernel.Selection"/>).</param>
/// <param name="Tiling">the tiling it ran with, by name.</param>
/// <param name="Tuning">every candidate tiling's times, where <see cref="MatMulTuner"/> chose the tiling.</param>
/// <param name="TimesMs">each timed dispatch of the product.</param>
/// <param name="HalfCopyMs">the conversion of A to the 16-bit copy the product read, if it read one.</param>
/// <param name="MaxRelativeError">the largest error over the largest |reference| of the checked
/// outputs (<see cref="ProductBench.Check"/>); null where an output was not finite.</param>
/// <param name="Tolerance">the largest relative error the kernel's precision and C's storage
/// allow (<see cref="ProductBench.Tolerance"/>).</param>
/// <param name="CheckedOutputs">how many sampled outputs were compared.</param>
/// <param name="Skipped">why the product was not measured (the device or build lacks its kernel), else null.</param>
internal sealed record ProductMeasurement(
    BenchProduct Product, WeightPrecision B, string? Kernel, string? Tiling, IReadOnlyList<MatMulTimedTiling>? Tuning, IReadOnlyList<double>? TimesMs,
    double? HalfCopyMs, double? MaxRelativeError, double Tolerance, int CheckedOutputs, string? Skipped)
{
    /// <summary>Measured, and within <see cref="Tolerance"/> of the fp64 reference.</summary>
    public bool Ok => Skipped is null && MaxRelativeError is { } e && e <= Tolerance;
}

/// <summary>The measurements in the order the products were given, how many product shapes the
/// tuner timed first (null where it did not run: <see cref="MatMulTuner.Enabled"/>), whether
/// the times are GPU timestamps (else wall-clock per rep), and the largest binding a product's
/// operand could have.</summary>
internal sealed record ProductBenchResult(IReadOnlyList<ProductMeasurement> Products, int? Tuned, bool Profiled, long BindingLimit);

/// <summary>
/// Times matrix products alone on a context and checks each against fp64 (what
/// <c>vkprompt bench matmul</c> runs on the products of a training step, <c>T5Pass.Trace</c>):
/// operands hashed in [-1, 1] (<see cref="MatMulOperands"/>) in one buffer per operand and
/// storage (<see cref="MatMulOperandBuffers"/>: 16-bit where the spec stores an operand in 16
/// bits, as the step does), sized for the largest product and reused by all; where <see cref="MatMulTuner.Enabled"/>, the
/// products tuned first; each product run untimed for a warm-up, then timed rep by rep
/// (<see cref="DispatchTimer.Repeat"/>), then once more for <see cref="Check"/>.
/// </summary>
internal static class ProductBench
{
    /// <summary>Largest error relative to the largest |C| of the checked outputs: the reference sums
    /// in fp64 the very values the kernel reads, so only the kernel's fp32 sums differ from it.</summary>
    public const double Fp32Tolerance = 1e-4;

    /// <summary>The same where the matrix units ran, their A rounded to fp16 (the reference rounds
    /// it likewise).</summary>
    public const double Fp16Tolerance = 2e-3;

    /// <summary>The same on bf16 fragments (<c>*_bf16</c> kernels), both operands rounded to bf16
    /// as the reference rounds them. Tighter than <see cref="Fp16Tolerance"/>, so that a kernel
    /// that rounded to fp16 or truncated instead (about 5e-4 off the bf16 reference at these
    /// sizes) fails: the matrix units' fp32 sums were within 3.3e-5 of fp64 in every product of
    /// the H100 and H200 runs (docs/results/*/mm-*.json), six times inside it.</summary>
    public const double Bf16FragmentsTolerance = 2e-4;

    /// <summary>The tolerance of <paramref name="kernel"/>'s sums, before C's storage.</summary>
    public static double KernelTolerance(string kernel) =>
        kernel.EndsWith("_bf16", StringComparison.Ordinal) ? Bf16FragmentsTolerance
        : MatMulKernel.IsMatrixUnitsKernel(kernel) ? Fp16Tolerance : Fp32Tolerance;

    /// <summary>Outputs compared per product (all of them where there are fewer), besides the corners.</summary>
    public const int Samples = 256;

    /// <summary>The tolerance of a product that ran on <paramref name="kernel"/> and stored C as
    /// <paramref name="c"/>: the kernel's t, plus, for a 16-bit C, the rounding of the store, which
    /// moves each output by at most the storage's unit roundoff u of itself (2^-8 bf16, 2^-11
    /// fp16: <see cref="ActivationPrecisions.UnitRoundoff"/>); the computed |C| exceeds the
    /// largest reference |C| by at most t of it, so the whole is t + u·(1 + t) of the largest |C|.
    /// 16-bit A and B need nothing more: the reference reads the very values they hold.</summary>
    public static double Tolerance(string kernel, ActivationPrecision c)
    {
        double t = KernelTolerance(kernel);
        return c == ActivationPrecision.Fp32 ? t : t + c.UnitRoundoff() * (1 + t);
    }

    /// <summary>Measures each product: skipped where an operand exceeds one binding, else
    /// timed <paramref name="reps"/> times after at least <paramref name="warmupMs"/> of untimed
    /// runs, and checked. Logs a line per product (<see cref="GpuOptions.Log"/>).</summary>
    /// <exception cref="InvalidOperationException">A product ran another kernel than
    /// <see cref="MatMulKernel.Selection"/> names, or the Vulkan validation layer reported an error.</exception>
    public static ProductBenchResult Run(GpuContext ctx, IReadOnlyList<BenchProduct> products, int reps, int warmupMs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(reps, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(warmupMs);
        long limit = Math.Min(ctx.MaxBindingBytes, ctx.Capabilities.MaxMemoryAllocationSize);
        var plans = products.Select(p => Plan.Of(ctx, p)).ToList();
        foreach (var plan in plans.Where(pl => pl.Largest > limit))
            plan.Skipped = $"needs a {plan.Largest >> 20} MiB binding, beyond the device's maxStorageBufferRange ({limit >> 20} MiB)";
        var runnable = plans.Where(pl => pl.Skipped is null).ToList();

        // First, so that its scratch operands are gone before the ones below are allocated.
        int? tuned = MatMulTuner.Enabled(ctx) ? MatMulTuner.Tune(ctx, runnable.Select(pl => (pl.Product.Spec, pl.Product.B))).Count : null;

        // One A and one C per storage, and one B per precision B is read in and storage.
        using var operands = new MatMulOperandBuffers(ctx, runnable.Select(pl => (pl.Product.Spec, pl.Product.B)), "bench");
        var results = new List<ProductMeasurement>();
        foreach (var plan in plans)
        {
            var p = plan.Product;
            var (kernel, tiling) = MatMulKernel.Selection(ctx, p.Spec, plan.Stored);
            double tolerance = Tolerance(kernel, p.Spec.CStorage);
            if (plan.Skipped is not null)
            {
                results.Add(new ProductMeasurement(p, plan.Stored, null, null, null, null, null, null, tolerance, 0, plan.Skipped));
                continue;
            }
            var (a, b, c) = (operands.A(p.Spec), operands.B(p.Spec, p.B), operands.C(p.Spec));
            var scales = operands.Scales(plan.Stored);
            ctx.Options.Log?.Invoke($"{p.Name}: {p.Spec.M}x{p.Spec.N}x{p.Spec.K} x{p.Spec.Batch1 * p.Spec.Batch2} (A {p.Spec.AStorage.Name()}, C {p.Spec.CStorage.Name()}), {kernel} {tiling}");
            var (times, copyMs) = Time(ctx, a, b, scales, c, operands.Seed, p.Spec, plan.Stored, reps, warmupMs, kernel, p.Name);
            var (error, checkedOutputs) = Check(ctx, a, b, c, p.Spec, plan.Stored, MatMulKernel.IsMatrixUnitsKernel(kernel), p.B, scales, operands.Seed);
            results.Add(new ProductMeasurement(p, plan.Stored, kernel, tiling, MatMulTuner.Find(ctx, p.Spec, plan.Stored)?.Candidates, times, copyMs, error, tolerance,
                                               checkedOutputs, null));
        }
        if (ctx.Validation.Errors.FirstOrDefault() is { } validationError)
            throw new InvalidOperationException($"{ctx.Validation.ErrorCount} Vulkan validation error(s); the first: {validationError}");
        return new ProductBenchResult(results, tuned, ctx.Capabilities.TimestampsSupported, limit);
    }

    /// <summary>The product's dispatches timed as <see cref="DispatchTimer.Repeat"/> times them, and,
    /// where it reads a 16-bit copy of A, the conversion's time (the first rep makes the copy, the
    /// others read it).</summary>
    static (IReadOnlyList<double> Times, double? CopyMs) Time(GpuContext ctx, GpuBuffer a, GpuBuffer b, GpuBuffer? bScales, GpuBuffer c, GpuBuffer seed, MatMulSpec spec,
                                                              WeightPrecision bPrecision, int reps, int warmupMs, string kernel, string name)
    {
        var epilogue = MatMulKernel.OntoC(spec, c, seed);
        var (times, labels) = DispatchTimer.Repeat(ctx, g => MatMulKernel.Run(g, a, b, c, spec, bPrecision, bScales, epilogue), reps, warmupMs);
        if (labels is null) return (times, null);
        // The label is the shader that was dispatched: it must be the one reported.
        if (labels.FirstOrDefault(label => label != kernel && label != ToHalfKernel.Shader) is { } ran)
            throw new InvalidOperationException($"MatMulKernel.Selection says {kernel} but {ran} ran for '{name}'");
        var copies = times.Where((_, i) => labels[i] == ToHalfKernel.Shader).ToList();
        return (times.Where((_, i) => labels[i] != ToHalfKernel.Shader).ToList(), copies.Count > 0 ? copies.Sum() : null);
    }

    /// <summary>A product, the precision its B is stored in, and its largest binding in bytes,
    /// each operand counted in its storage.</summary>
    sealed class Plan
    {
        public required BenchProduct Product { get; init; }
        public required WeightPrecision Stored { get; init; }
        public long Largest;
        public string? Skipped;

        public static Plan Of(GpuContext ctx, BenchProduct p)
        {
            var (a, b, c) = p.Spec.Extents();
            var stored = ctx.Plan.StoredPrecision(p.B);
            return new Plan
            {
                Product = p, Stored = stored,
                Largest = Math.Max(Math.Max(p.Spec.AStorage.Bytes(a), p.Spec.CStorage.Bytes(c)),
                                   p.B == WeightPrecision.Fp32 ? p.Spec.BStorage.Bytes(b) : stored.ElementBytes() * b),
            };
        }
    }

    static float ToHalf(float v) => (float)(Half)Math.Clamp(v, -HalfFloat.Fp16Max, HalfFloat.Fp16Max);

    static float ToBf16(float v) => HalfFloat.FromBf16(HalfFloat.ToBf16(v));

    /// <summary>Runs the product once more into a C filled with NaN (or with 1 where it
    /// accumulates), downloads sampled outputs and compares them with fp64 dot products of the
    /// operands as the kernel reads them: A and B hold <see cref="MatMulOperands"/>' values of
    /// <see cref="MatMulOperands.SeedA"/> and <see cref="MatMulOperands.SeedB"/>, each as stored
    /// (A and an activation B rounded to their <see cref="MatMulSpec.AStorage"/> and
    /// <see cref="MatMulSpec.BStorage"/>), A rounded to fp16 (saturating) where the matrix units
    /// ran. A 16-bit C is widened as it is downloaded. Returns the largest error over the largest
    /// |reference|, null when an output is not finite, and how many outputs were compared.</summary>
    /// <param name="ctx">the context the operands live on.</param>
    /// <param name="a">A, filled from <see cref="MatMulOperands.SeedA"/> in the spec's AStorage.</param>
    /// <param name="b">B, filled from <see cref="MatMulOperands.SeedB"/> in <paramref name="bPrecision"/>
    /// (for an activation B, fp32, in the spec's BStorage).</param>
    /// <param name="c">C, stored as the spec's CStorage, overwritten.</param>
    /// <param name="s">the product.</param>
    /// <param name="bPrecision">the precision B is stored in.</param>
    /// <param name="matrixUnits">whether the product runs on the matrix units (A read as fp16, or
    /// both operands as bf16 where the context's fragments are, <see cref="DevicePlan.MatrixUnitsOperands"/>).</param>
    /// <param name="bValues">the precision B's values were rounded to, where it differs from the
    /// one they are stored in (bf16 stored as fp16).</param>
    /// <param name="bScales">an int8 B's row scales (<see cref="MatMulOperands.FillInt8Scales"/>).</param>
    /// <param name="seed">a dropping epilogue's seed, holding <see cref="MatMulOperands.DropoutSeed"/>.</param>
    public static (double? Error, int Checked) Check(GpuContext ctx, GpuBuffer a, GpuBuffer b, GpuBuffer c, MatMulSpec s, WeightPrecision bPrecision, bool matrixUnits,
                                                     WeightPrecision? bValues = null, GpuBuffer? bScales = null, GpuBuffer? seed = null)
    {
        const float initial = 1f;
        // A residual epilogue's D is C's own buffer here (MatMulKernel.OntoC): C = 1 + the product,
        // dropped where the spec drops (the mask of C's element index, as DropoutReference draws it).
        // The relu's C is the relu of the product, held to it as the rest. The gate's would leave
        // its hidden in C, so its product is checked alone (the tests hold the gate itself to the
        // gated activation, bit for bit), on the kernel without the epilogue.
        if (s.Epilogue == MatMulEpilogue.Gate) s = s with { Epilogue = MatMulEpilogue.None, EpilogueDropout = false };
        if (s.EpilogueDropout && seed is null) throw new ArgumentException("a dropping epilogue's product needs the seed of its mask", nameof(seed));
        bool relu = s.Epilogue == MatMulEpilogue.Relu;
        bool sumsOntoC = s.Accumulate || s.Epilogue == MatMulEpilogue.Residual;
        uint threshold = s.EpilogueDropout ? DropoutKernel.KeepThreshold(MatMulKernel.BenchDropout) : 0;
        float keepScale = DropoutKernel.KeepScale(MatMulKernel.BenchDropout);
        using (var graph = new CommandGraph(ctx, profiling: false))
        {
            graph.Fill(c, FillPattern(sumsOntoC ? initial : float.NaN, s.CStorage));
            MatMulKernel.Run(graph, a, b, c, s, bPrecision, bScales, MatMulKernel.OntoC(s, c, seed!));
            graph.Run();
        }

        long total = (long)s.Batch1 * s.Batch2 * s.M * s.N;
        var picks = new SortedSet<long>();
        if (total <= Samples)
            for (long i = 0; i < total; i++) picks.Add(i);
        else
        {
            var rng = new Random(0);
            while (picks.Count < Samples) picks.Add(rng.NextInt64(total));
            // The corners of the first and last matrix: edge tiles are where a tiling goes wrong.
            long matrix = (long)s.M * s.N;
            foreach (long z in new[] { 0, total / matrix - 1 })
                foreach (long e in new[] { 0L, s.N - 1, (long)(s.M - 1) * s.N, matrix - 1 })
                    picks.Add(z * matrix + e);
        }

        var outputs = picks.Select(i =>
        {
            long n = i % s.N, m = i / s.N % s.M, z = i / ((long)s.M * s.N);
            long z1 = z / s.Batch2, z2 = z % s.Batch2;
            return (z1, z2, m, n, Address: s.COffset + z1 * s.CStrideBatch1 + z2 * s.CStrideBatch2 + m * s.CStrideM + n);
        }).ToList();
        var got = Download(c, s.CStorage, outputs.Select(o => o.Address).ToList());

        bool bf16Fragments = matrixUnits && ctx.Plan.Bf16Fragments;
        double maxRef = 0, maxDiff = 0;
        foreach (var (z1, z2, m, n, address) in outputs)
        {
            long aBase = s.AOffset + z1 * s.AStrideBatch1 + z2 * s.AStrideBatch2 + m * s.AStrideM;
            long bBase = s.BOffset + z1 * s.BStrideBatch1 + z2 * s.BStrideBatch2 + n * s.BStrideN;
            double sum = 0;
            for (long k = 0; k < s.K; k++)
            {
                float av = MatMulOperands.Stored(MatMulOperands.SeedA, aBase + k * s.AStrideK, s.AStorage);
                float bv = bPrecision == WeightPrecision.Fp32
                    ? MatMulOperands.Stored(MatMulOperands.SeedB, bBase + k * s.BStrideK, s.BStorage)
                    : MatMulOperands.Stored(MatMulOperands.SeedB, bBase + k * s.BStrideK, bValues ?? bPrecision);
                // The matrix units read A, and an activation or fp32 B, rounded to fp16; with bf16
                // fragments both operands rounded to bf16 (a bf16 B, an int8 B's bytes: exactly).
                if (bf16Fragments) (av, bv) = (ToBf16(av), ToBf16(bv));
                else if (matrixUnits) (av, bv) = (ToHalf(av), bPrecision == WeightPrecision.Fp32 ? ToHalf(bv) : bv);
                sum += (double)av * bv;
            }
            double product = s.Alpha * sum;
            if (relu) product = Math.Max(product, 0);
            if (threshold != 0) product = DropoutReference.Keep((uint)address, threshold, MatMulOperands.DropoutSeed, 0) ? product * keepScale : 0;
            double expected = product + (sumsOntoC ? initial : 0);
            double actual = got[address];
            if (!double.IsFinite(actual)) return (null, outputs.Count);
            maxRef = Math.Max(maxRef, Math.Abs(expected));
            maxDiff = Math.Max(maxDiff, Math.Abs(actual - expected));
        }
        return (maxRef > 0 ? maxDiff / maxRef : maxDiff, outputs.Count);
    }

    /// <summary>The 32 bits <see cref="CommandGraph.Fill"/> writes for every element of a buffer
    /// stored as <paramref name="storage"/> to hold <paramref name="value"/>: a 16-bit one twice.</summary>
    static uint FillPattern(float value, ActivationPrecision storage)
    {
        if (storage == ActivationPrecision.Fp32) return BitConverter.SingleToUInt32Bits(value);
        Span<ushort> half = stackalloc ushort[1];
        ActivationPrecisions.Encode([value], half, storage);
        return half[0] | (uint)half[0] << 16;
    }

    /// <summary>The values at the given element addresses of C, stored as <paramref name="storage"/>
    /// and widened to fp32, downloaded in windows of at most 16 Ki elements (sampled outputs lie
    /// far apart in a large C: wider windows copy mostly what is not needed).</summary>
    static Dictionary<long, float> Download(GpuBuffer c, ActivationPrecision storage, List<long> addresses)
    {
        const long Window = 1 << 14;
        var values = new Dictionary<long, float>();
        var sorted = addresses.Distinct().Order().ToList();
        for (int i = 0; i < sorted.Count;)
        {
            long start = sorted[i];
            int j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] - start < Window) j++;
            var window = new float[sorted[j] - start + 1];
            if (storage == ActivationPrecision.Fp32) c.Download<float>(window, start);
            else
            {
                var halves = new ushort[window.Length];
                c.Download<ushort>(halves, start);
                ActivationPrecisions.Decode(halves, window, storage);
            }
            for (int x = i; x <= j; x++) values[sorted[x]] = window[sorted[x] - start];
            i = j + 1;
        }
        return values;
    }
}
