namespace VkPrompt.Runtime.Kernels;

/// <summary>Which optional parts of an attention a kernel applies, pushed as the bits of one uint
/// by both attention kernels (<see cref="AttentionSoftmaxKernel"/>, <see cref="FusedAttentionKernel"/>);
/// shaders/include/attention_options.glsl gives their shaders the same values.</summary>
[Flags]
internal enum AttentionOptions : uint { None = 0, Bias = 1, Mask = 2, Causal = 4, Dropout = 8 }

static class AttentionInputs
{
    /// <summary>The options <paramref name="shape"/> and the optional inputs switch on, less
    /// dropout (which each kernel checks in its own terms), after checking the inputs given: the
    /// position bias needs both the bucket table [Lq + Lk - 1] and the bias weights [numBuckets, H],
    /// the key mask is [B, Lk].</summary>
    public static AttentionOptions Check(string kernel, AttentionShape shape, GpuBuffer? buckets, GpuBuffer? biasWeight, GpuBuffer? keyMask)
    {
        if ((buckets is null) != (biasWeight is null))
            throw new ArgumentException($"{kernel}: the position bias needs both the bucket table and the bias weights");
        var options = AttentionOptions.None;
        if (buckets is not null && biasWeight is not null)
        {
            BufferChecks.Require(kernel, buckets, shape.Diagonals, "buckets [Lq + Lk - 1]");
            BufferChecks.Require(kernel, biasWeight, shape.Heads, "biasWeight [numBuckets, H]");
            options |= AttentionOptions.Bias;
        }
        if (keyMask is not null)
        {
            BufferChecks.Require(kernel, keyMask, (long)shape.Batch * shape.KeyLength, "keyMask [B, Lk]");
            options |= AttentionOptions.Mask;
        }
        if (shape.Causal) options |= AttentionOptions.Causal;
        return options;
    }
}
