namespace VkPrompt.Runtime.Kernels;

/// <summary>Shape of one attention: scores are [Batch, Heads, QueryLength, KeyLength]. Causal hides
/// keys j &gt; i + QueryOffset from query i; a KV-cached decoder step passes its one query's
/// position t as QueryOffset (QueryLength 1).</summary>
internal readonly record struct AttentionShape(int Batch, int Heads, int QueryLength, int KeyLength, bool Causal = false, int QueryOffset = 0)
{
    public long Rows => (long)Batch * Heads * QueryLength;
    public long Elements => Rows * KeyLength;

    /// <summary>Length of the bucket table: one bucket per diagonal j - i, since T5's relative
    /// position bucket depends on that alone.</summary>
    public int Diagonals => QueryLength + KeyLength - 1;

    /// <summary>Where the bucket table holds query i and key j (shaders: include/common.glsl's
    /// bucketIndex).</summary>
    public int BucketIndex(int i, int j) => j - i + QueryLength - 1;
}

/// <summary>Dropout on attention probabilities, done by the softmax kernels as they pass over
/// them (<see cref="AttentionSoftmaxKernel"/>, <see cref="SoftmaxBackwardKernel"/>): the mask
/// <see cref="DropoutKernel"/> draws for <paramref name="Seed"/> and <paramref name="Stream"/>
/// over the flat [B, H, Lq, Lk] tensor, and <paramref name="Dropped"/>, a buffer of its own, gets
/// the dropped probabilities. Rate 0 is no dropout: nothing is drawn and Dropped is not written.
/// TBuffer is the GPU buffer of a dispatch or the tensor of a backend.</summary>
internal readonly record struct ProbsDropout<TBuffer>(float Rate, TBuffer Seed, uint Stream, TBuffer Dropped) where TBuffer : class
{
    /// <summary>The mask, without where the dropped probabilities go.</summary>
    public DropoutMask<TBuffer> Mask => new(Rate, Seed, Stream);
}

/// <summary>T5 attention probabilities in place over the scores:
/// p[b,h,i,j] = softmax_j(s[b,h,i,j] + bias[h,i,j]) in fp32 with max subtraction, where
/// bias = biasWeight[buckets[j - i + Lq - 1] * H + h] (biasWeight is HF's relative_attention_bias.weight
/// [numBuckets, H]; buckets an int vector over the Lq + Lk - 1 diagonals computed on the host), keys with
/// keyMask[b*Lk + j] == 0 (an int [B, Lk]) and, if causal, keys past i + QueryOffset get -inf.
/// A row whose keys are all masked becomes zeros, never NaN. Bias (buckets and biasWeight
/// together) and mask are optional: pass null. Neither needs a gradient (frozen, constant).
/// With a dropout the same pass also writes the dropped probabilities, which a
/// separate <see cref="DropoutKernel"/> pass would have made bit for bit.</summary>
internal static class AttentionSoftmaxKernel
{
    static readonly KernelLayout Layout = new([Access.ReadWrite, Access.Read, Access.Read, Access.Read, Access.Read, Access.Write], 36);

    readonly record struct Push(uint Batch, uint Heads, uint QueryLength, uint KeyLength, AttentionOptions Flags, int QueryOffset,
                                uint Threshold, float Scale, uint Stream);

    public static void Forward(CommandGraph g, GpuBuffer scores, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask, AttentionShape shape,
                               ProbsDropout<GpuBuffer>? dropout = null)
    {
        const string name = "attention_softmax";
        BufferChecks.NonNegative(name, (shape.Batch, nameof(shape.Batch)), (shape.Heads, nameof(shape.Heads)), (shape.QueryLength, nameof(shape.QueryLength)));
        if (shape.KeyLength <= 0) throw new ArgumentOutOfRangeException(nameof(shape), $"{name}: KeyLength must be positive, got {shape}");
        var flags = AttentionInputs.Check(name, shape, buckets, biasWeight, keyMask);
        BufferChecks.Require(name, scores, shape.Elements, "scores [B, H, Lq, Lk]");
        var (threshold, scale, seed, dropped) = ProbsDropouts.Check(name, dropout, shape.Elements, scores);
        if (dropped is not null) flags |= AttentionOptions.Dropout;

        var (local, cache, subgroupRows, groups) = Rows.Shape(g.Context, shape.Rows, shape.KeyLength);
        var k = g.Context.Kernel(name, Layout, local, cache, subgroupRows);
        var push = new Push((uint)shape.Batch, (uint)shape.Heads, (uint)shape.QueryLength, (uint)shape.KeyLength, flags, shape.QueryOffset,
                            threshold, scale, dropout?.Stream ?? 0);
        // An absent input's binding holds the scores buffer: the shader never touches it with the
        // flag off, and no stand-in buffer has to be allocated and kept alive beside the graph.
        g.Dispatch(k, groups, push, scores, buckets ?? scores, biasWeight ?? scores, keyMask ?? scores, seed ?? scores, dropped ?? scores);
    }
}

/// <summary>What the softmax kernels check and push of a <see cref="ProbsDropout{TBuffer}"/>:
/// its mask as <see cref="DropoutMasks"/> checks it, and the buffer the dropped probabilities go to.</summary>
static class ProbsDropouts
{
    /// <summary>The keep threshold and scale, with the seed and output buffers; null buffers when
    /// there is no dropout (none given, or rate 0). <paramref name="operands"/> are the kernel's
    /// other buffers, which the dropped probabilities may not overwrite.</summary>
    public static (uint Threshold, float Scale, GpuBuffer? Seed, GpuBuffer? Dropped) Check(string kernel, ProbsDropout<GpuBuffer>? dropout, long elements,
                                                                                         params ReadOnlySpan<GpuBuffer> operands)
    {
        var (threshold, scale, seed) = DropoutMasks.Check(kernel, dropout?.Mask, elements);
        if (dropout is not { } d || seed is null) return (threshold, scale, null, null);
        BufferChecks.Require(kernel, d.Dropped, elements, "dropped probabilities");
        foreach (var operand in operands)
            if (d.Dropped == operand) throw new ArgumentException($"{kernel}: the dropped probabilities need a buffer of their own, not {operand.Name}");
        return (threshold, scale, seed, d.Dropped);
    }
}
