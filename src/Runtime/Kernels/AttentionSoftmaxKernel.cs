namespace VkPrompt.Runtime.Kernels;

/// <summary>Shape of one attention: scores are [Batch, Heads, QueryLength, KeyLength]. Causal hides
/// keys j &gt; i + QueryOffset from query i; a KV-cached decoder step passes its one query's
/// position t as QueryOffset (QueryLength 1).</summary>
public readonly record struct AttentionShape(int Batch, int Heads, int QueryLength, int KeyLength, bool Causal = false, int QueryOffset = 0)
{
    public long Rows => (long)Batch * Heads * QueryLength;
    public long Elements => Rows * KeyLength;
}

/// <summary>T5 attention probabilities in place over the scores:
/// p[b,h,i,j] = softmax_j(s[b,h,i,j] + bias[h,i,j]) in fp32 with max subtraction, where
/// bias = biasWeight[buckets[i*Lk + j] * H + h] (biasWeight is HF's relative_attention_bias.weight
/// [numBuckets, H]; buckets an int table [Lq, Lk] computed on the host), keys with
/// keyMask[b*Lk + j] == 0 (an int [B, Lk]) and, if causal, keys past i + QueryOffset get -inf.
/// A row whose keys are all masked becomes zeros, never NaN. Bias (buckets and biasWeight
/// together) and mask are optional: pass null. Neither needs a gradient (frozen, constant).</summary>
public static class AttentionSoftmaxKernel
{
    static readonly KernelLayout Layout = new([Access.ReadWrite, Access.Read, Access.Read, Access.Read], 24);

    [Flags]
    enum Options : uint { None = 0, Bias = 1, Mask = 2, Causal = 4 }

    readonly record struct Push(uint Batch, uint Heads, uint QueryLength, uint KeyLength, Options Flags, int QueryOffset);

    public static void Forward(CommandGraph g, GpuBuffer scores, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask, AttentionShape shape)
    {
        const string name = "attention_softmax";
        BufferChecks.NonNegative(name, (shape.Batch, nameof(shape.Batch)), (shape.Heads, nameof(shape.Heads)), (shape.QueryLength, nameof(shape.QueryLength)));
        if (shape.KeyLength <= 0) throw new ArgumentOutOfRangeException(nameof(shape), $"{name}: KeyLength must be positive, got {shape}");
        if ((buckets is null) != (biasWeight is null))
            throw new ArgumentException($"{name}: the position bias needs both the bucket table and the bias weights");
        BufferChecks.Require(name, scores, shape.Elements, "scores [B, H, Lq, Lk]");
        var flags = Options.None;
        if (buckets is not null && biasWeight is not null)
        {
            BufferChecks.Require(name, buckets, (long)shape.QueryLength * shape.KeyLength, "buckets [Lq, Lk]");
            BufferChecks.Require(name, biasWeight, shape.Heads, "biasWeight [numBuckets, H]");
            flags |= Options.Bias;
        }
        if (keyMask is not null)
        {
            BufferChecks.Require(name, keyMask, (long)shape.Batch * shape.KeyLength, "keyMask [B, Lk]");
            flags |= Options.Mask;
        }
        if (shape.Causal) flags |= Options.Causal;

        int local = Rows.LocalSize(g.Context.Capabilities);
        var k = g.Context.Kernel(name, Layout, local);
        var push = new Push((uint)shape.Batch, (uint)shape.Heads, (uint)shape.QueryLength, (uint)shape.KeyLength, flags, shape.QueryOffset);
        // An absent input's binding holds the scores buffer: the shader never reads it with the flag
        // off, and no stand-in buffer has to be allocated and kept alive beside the graph.
        g.Dispatch(k, Rows.Groups(shape.Rows), push, scores, buckets ?? scores, biasWeight ?? scores, keyMask ?? scores);
    }
}
