using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Bench;

/// <summary>One kernel dispatch at a T5 shape: it allocates its operands with random contents
/// and appends the op to a graph that the benchmark replays.</summary>
public abstract record KernelCase(string Name, double Flops, double Bytes) : IWork
{
    internal abstract void Append(CommandGraph g, Operands operands);

    public sealed override string ToString() => Name;

    /// <summary>"matmul enc q, enc k [MxK]·[KxN]": the product's uses without their counts (the
    /// summary's column cuts longer names), its sizes and the number of matrices where there are several.</summary>
    static string Label(StepProduct p)
    {
        var s = p.Spec;
        return $"matmul {string.Join(", ", p.Uses.Select(u => u.Name))} " + (s.Batch1 * s.Batch2 > 1 ? $"{s.Batch1 * s.Batch2}x" : "") + $"[{s.M}x{s.K}]·[{s.K}x{s.N}]";
    }

    /// <summary>Every kernel of a training step at the workload's shapes: each distinct matrix
    /// product of the step, the row kernels, Adafactor.</summary>
    public static IEnumerable<KernelCase> All(Workload w, DeviceCapabilities caps)
    {
        var c = w.Config;
        var s = w.Kernels;
        int rows = s.Batch * s.EncoderLength, le = s.EncoderLength, d = c.DModel;
        int decRows = s.Batch * s.TargetLength, vocab = c.VocabSize;
        // The products as T5Pass emits them (traced), every attention unfused so that its products
        // are here too (the fused attention has cases of its own), with the weights stored as fp32
        // and, where the device reads 16-bit storage, as bf16; products of two activations, fp32
        // whatever the weights, once.
        var weightPrecisions = new[] { WeightPrecision.Fp32, WeightPrecision.Bf16 }.Where(p => p.IsSupported(caps));
        foreach (var p in weightPrecisions)
            foreach (var product in StepProduct.Distinct(T5Pass.Trace(c, s, ActivationMode.Store, (float)c.DropoutRate, p, _ => false)))
                if (product.Weight is { } weight)
                    yield return new MatMulCase(Label(product), product.Spec, weight);
                else if (p == WeightPrecision.Fp32)
                    yield return new MatMulCase(Label(product), product.Spec);
        var attention = new AttentionShape(s.Batch, c.NumHeads, le, le);
        yield return new AttentionSoftmaxCase(c, attention);
        yield return new SoftmaxBackwardCase(attention);
        var fused = new FusedAttentionShape(attention, c.DKv);
        yield return new FusedAttentionCase(c, fused, Backward: false);
        yield return new FusedAttentionCase(c, fused, Backward: true);
        if (caps.ShaderFloat16) yield return new ToHalfCase(rows, d);
        yield return new RmsNormCase(rows, d, Backward: false);
        yield return new RmsNormCase(rows, d, Backward: true);
        yield return new CrossEntropyCase(decRows, vocab, Backward: false);
        yield return new CrossEntropyCase(decRows, vocab, Backward: true);
        yield return new AdafactorCase(s.PromptLength, d);
    }
}

/// <summary>The buffers of one case, freed with it.</summary>
public sealed class Operands(GpuContext ctx) : IDisposable
{
    readonly List<IDisposable> owned = new();
    readonly Random rng = new(1);

    internal GpuBuffer Floats(long n, float scale = 1f)
    {
        var data = new float[n];
        for (long i = 0; i < n; i++) data[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return Own(GpuBuffer.From<float>(ctx, data));
    }

    internal GpuBuffer Zeros(long n) => Own(GpuBuffer.From<float>(ctx, new float[n]));

    internal GpuBuffer Ints(int[] values) => Own(GpuBuffer.From<int>(ctx, values));

    /// <summary>A random [rows, cols] weight stored as <paramref name="precision"/> in one buffer.</summary>
    internal GpuBuffer Weight(int rows, int cols, WeightPrecision precision)
    {
        var table = new SplitTensor(ctx, rows, cols, "weight", precision);
        owned.Add(table);
        if (table.Chunks.Count != 1)
            throw new NotSupportedException($"a {rows}x{cols} {precision.Name()} weight needs {table.Chunks.Count} bindings on this device; the kernel benchmarks take one");
        var data = new float[(long)rows * cols];
        for (long i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
        table.Upload(data);
        return table.Chunks[0].Buffer;
    }

    GpuBuffer Own(GpuBuffer b)
    {
        owned.Add(b);
        return b;
    }

    public void Dispose()
    {
        foreach (var b in owned) b.Dispose();
    }
}

/// <summary>A product whose B is stored as <paramref name="BPrecision"/> (a weight); A and C are fp32.</summary>
sealed record MatMulCase(string Label, MatMulSpec Spec, WeightPrecision BPrecision = WeightPrecision.Fp32)
    : KernelCase(BPrecision == WeightPrecision.Fp32 ? Label : $"{Label} {BPrecision.Name()}",
                 2.0 * Spec.M * Spec.N * Spec.K * Spec.Batch1 * Spec.Batch2,
                 (double)Spec.Batch1 * Spec.Batch2 * (4.0 * Spec.M * Spec.K + BPrecision.ElementBytes() * (double)Spec.K * Spec.N + 4.0 * Spec.M * Spec.N))
{
    internal override void Append(CommandGraph g, Operands o)
    {
        long a = Extent(Spec.AOffset, (Spec.Batch1, Spec.AStrideBatch1), (Spec.Batch2, Spec.AStrideBatch2), (Spec.M, Spec.AStrideM), (Spec.K, Spec.AStrideK));
        long b = Extent(Spec.BOffset, (Spec.Batch1, Spec.BStrideBatch1), (Spec.Batch2, Spec.BStrideBatch2), (Spec.K, Spec.BStrideK), (Spec.N, Spec.BStrideN));
        long c = Extent(Spec.COffset, (Spec.Batch1, Spec.CStrideBatch1), (Spec.Batch2, Spec.CStrideBatch2), (Spec.M, Spec.CStrideM), (Spec.N, 1));
        // A 16-bit B is an unbatched weight: stored [N, K] when read transposed (k contiguous), else [K, N].
        var (rows, cols) = Spec.BStrideK == 1 ? (Spec.N, Spec.K) : (Spec.K, Spec.N);
        var weight = BPrecision == WeightPrecision.Fp32 ? o.Floats(b) : o.Weight(rows, cols, BPrecision);
        var cBuffer = o.Floats(c);
        var seed = o.Ints([(int)MatMulOperands.DropoutSeed]);
        MatMulKernel.Run(g, o.Floats(a), weight, cBuffer, Spec, BPrecision, epilogue: MatMulKernel.OntoC(Spec, cBuffer, seed));
    }

    /// <summary>Elements an operand spans: one past its last element.</summary>
    static long Extent(int offset, params (int Size, int Stride)[] dims) => offset + dims.Sum(d => (long)(d.Size - 1) * d.Stride) + 1;
}

/// <summary>In place over [B, H, L, L] scores with T5's position bias and a key mask.</summary>
sealed record AttentionSoftmaxCase(T5Config Config, AttentionShape Shape)
    : KernelCase($"attention softmax fwd {Shape.Batch}x{Shape.Heads}x{Shape.QueryLength}x{Shape.KeyLength}", 0, 8.0 * Shape.Elements)
{
    internal override void Append(CommandGraph g, Operands o)
    {
        var buckets = o.Ints(RelativePosition.Table(Shape.QueryLength, Shape.KeyLength, true, Config.RelativeAttentionNumBuckets, Config.RelativeAttentionMaxDistance));
        var mask = o.Ints(Enumerable.Repeat(1, Shape.Batch * Shape.KeyLength).ToArray());
        AttentionSoftmaxKernel.Forward(g, o.Floats(Shape.Elements), buckets, o.Floats((long)Config.RelativeAttentionNumBuckets * Shape.Heads), mask, Shape);
    }
}

/// <summary>Reads the probabilities, reads and rewrites the gradient.</summary>
sealed record SoftmaxBackwardCase(AttentionShape Shape)
    : KernelCase($"attention softmax bwd {Shape.Batch}x{Shape.Heads}x{Shape.QueryLength}x{Shape.KeyLength}", 0, 12.0 * Shape.Elements)
{
    internal override void Append(CommandGraph g, Operands o) =>
        SoftmaxBackwardKernel.Backward(g, o.Floats(Shape.Elements, 0.01f), o.Floats(Shape.Elements), (int)Shape.Rows, Shape.KeyLength);
}

/// <summary>The fused attention, forward or backward, with T5's position bias, a key mask and
/// dropout, on whichever kernels the context picks (the matrix units' with
/// VKPROMPT_MATRIX_UNITS=all). FLOPs are its products' multiply-adds: q·kᵀ and P·V forward; the
/// backward recomputes q·kᵀ in both of its passes, forms dO·vᵀ in both, and adds dS·k, dSᵀ·q and
/// Pᵀ·dO, seven products. Bytes are its activations read and written once (no score reaches memory).</summary>
sealed record FusedAttentionCase(T5Config Config, FusedAttentionShape Shape, bool Backward)
    : KernelCase($"fused attention {(Backward ? "bwd" : "fwd")} {Shape.Scores.Batch}x{Shape.Scores.Heads}x{Shape.Scores.QueryLength}x{Shape.Scores.KeyLength}x{Shape.DKv}",
                 (Backward ? 7 : 2) * 2.0 * Shape.Scores.Elements * Shape.DKv,
                 4.0 * (Backward ? 8 : 4) * Shape.QueryElements)
{
    internal override void Append(CommandGraph g, Operands o)
    {
        var a = Shape.Scores;
        var buckets = o.Ints(RelativePosition.Table(a.QueryLength, a.KeyLength, true, Config.RelativeAttentionNumBuckets, Config.RelativeAttentionMaxDistance));
        var bias = o.Floats((long)Config.RelativeAttentionNumBuckets * a.Heads);
        var mask = o.Ints(Enumerable.Repeat(1, a.Batch * a.KeyLength).ToArray());
        var seed = o.Ints([1234]);
        float rate = (float)Config.DropoutRate;
        GpuBuffer q = o.Floats(Shape.QueryElements), k = o.Floats(Shape.KeyElements), v = o.Floats(Shape.KeyElements);
        GpuBuffer output = o.Zeros(Shape.QueryElements), lse = o.Zeros(a.Rows);
        if (!Backward)
        {
            FusedAttentionKernel.Forward(g, q, k, v, output, lse, buckets, bias, mask, Shape, rate, seed, stream: 7);
            return;
        }
        // The backward's inputs from one forward, recorded once before the replays time it.
        using (var forward = new CommandGraph(g.Context, profiling: false))
        {
            FusedAttentionKernel.Forward(forward, q, k, v, output, lse, buckets, bias, mask, Shape, rate, seed, stream: 7);
            forward.Run();
        }
        FusedAttentionKernel.Backward(g, q, k, v, output, lse, o.Floats(Shape.QueryElements, 1e-3f), o.Zeros(Shape.QueryElements), o.Zeros(Shape.KeyElements),
                                      o.Zeros(Shape.KeyElements), buckets, bias, mask, Shape, rate, seed, stream: 7);
    }
}

/// <summary>Forward reads x and writes y; backward reads x and dy and accumulates into dx, as T5Pass does.</summary>
sealed record RmsNormCase(int Rows, int Dim, bool Backward)
    : KernelCase($"rmsnorm {(Backward ? "bwd" : "fwd")} [{Rows}x{Dim}]", 0, (Backward ? 16.0 : 8.0) * Rows * Dim)
{
    internal override void Append(CommandGraph g, Operands o)
    {
        long n = (long)Rows * Dim;
        if (Backward) RmsNormKernel.Backward(g, o.Floats(n), o.Floats(Dim), o.Floats(n), o.Floats(n), Rows, Dim, 1e-6f, accumulate: true);
        else RmsNormKernel.Forward(g, o.Floats(n), o.Floats(Dim), o.Floats(n), Rows, Dim, 1e-6f);
    }
}

/// <summary>The 16-bit copy of an activation a matrix-unit product reads: 4 bytes read and 2
/// written per element.</summary>
sealed record ToHalfCase(int Rows, int Dim)
    : KernelCase($"to_half [{Rows}x{Dim}]", 0, 6.0 * Rows * Dim)
{
    internal override void Append(CommandGraph g, Operands o)
    {
        long n = (long)Rows * Dim;
        ToHalfKernel.Run(g, o.Floats(n), 0, o.Floats(ToHalfKernel.OutputBytes(n) / 4), n);
    }
}

/// <summary>Forward reads the logits; backward reads them and writes their gradient.</summary>
sealed record CrossEntropyCase(int Rows, int Vocab, bool Backward)
    : KernelCase($"cross-entropy {(Backward ? "bwd" : "fwd")} [{Rows}x{Vocab}]", 0, (Backward ? 8.0 : 4.0) * Rows * Vocab)
{
    internal override void Append(CommandGraph g, Operands o)
    {
        var targets = o.Ints(Enumerable.Range(0, Rows).Select(r => r * 7919 % Vocab).ToArray());
        var logits = o.Floats((long)Rows * Vocab, 5f);
        if (Backward) CrossEntropyKernel.Backward(g, logits, targets, o.Floats((long)Rows * Vocab), Rows, Vocab);
        else CrossEntropyKernel.Forward(g, logits, targets, o.Floats(Rows), Rows, Vocab);
    }
}

/// <summary>One step on a [P, d] prompt: the parameter, gradient, update and (unfactored) second
/// moment are each read, and all but the gradient written: about seven passes over P·d floats.</summary>
sealed record AdafactorCase(int Rows, int Cols)
    : KernelCase($"adafactor [{Rows}x{Cols}]", 0, 7.0 * 4 * Rows * Cols)
{
    internal override void Append(CommandGraph g, Operands o)
    {
        var settings = new AdafactorSettings();
        // A zero state is step 0 with empty moments.
        var state = o.Zeros(settings.StateLength(Rows, Cols));
        AdafactorKernel.Step(g, o.Floats((long)Rows * Cols), o.Floats((long)Rows * Cols, 1e-3f), state, o.Floats((long)Rows * Cols), Rows, Cols, settings);
    }
}
