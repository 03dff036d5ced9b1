namespace VkPrompt.Model;

/// <summary>T5's relative-position buckets, computed on the host once per sequence shape and
/// uploaded as an int table; kernels only gather <c>bias[bucket, head]</c>.</summary>
internal static class RelativePosition
{
    /// <summary>Bucket of key position j seen from query position i (relative = j - i), exactly as
    /// Hugging Face's <c>_relative_position_bucket</c>, including its float32 logarithm and the
    /// truncation toward zero, so bucket edges agree with the reference bit for bit.</summary>
    public static int Bucket(int relative, bool bidirectional, int numBuckets, int maxDistance)
    {
        int bucket = 0;
        if (bidirectional)
        {
            numBuckets /= 2;
            if (relative > 0) bucket += numBuckets;
            relative = Math.Abs(relative);
        }
        else
            relative = -Math.Min(relative, 0);
        int maxExact = numBuckets / 2;
        if (relative < maxExact) return bucket + relative;
        float scaled = MathF.Log(relative / (float)maxExact) / (float)Math.Log(maxDistance / (double)maxExact) * (numBuckets - maxExact);
        return bucket + Math.Min(maxExact + (int)scaled, numBuckets - 1);
    }

    /// <summary>The buckets of every (query, key) pair of a [queryLength, keyLength] attention whose
    /// queries sit at positions queryOffset.. : a bucket depends on j - i alone, so the table is one
    /// vector of the queryLength + keyLength - 1 diagonals, query i and key j at
    /// <see cref="Runtime.Kernels.AttentionShape.BucketIndex"/>. A [Lq, Lk] table would be as large
    /// as a head's scores, which fused attention exists not to store, and its rows would be read
    /// 16 at once by the matrix units' softmax, each from another cache line.</summary>
    public static int[] Table(int queryLength, int keyLength, bool bidirectional, int numBuckets, int maxDistance, int queryOffset = 0)
    {
        var t = new int[queryLength + keyLength - 1];
        for (int d = 0; d < t.Length; d++)
            t[d] = Bucket(d - (queryLength - 1) - queryOffset, bidirectional, numBuckets, maxDistance);
        return t;
    }
}
