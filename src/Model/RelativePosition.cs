namespace VkPrompt.Model;

/// <summary>T5's relative-position buckets, computed on the host once per sequence shape and
/// uploaded as an int table; kernels only gather <c>bias[bucket, head]</c>.</summary>
public static class RelativePosition
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

    /// <summary>The [queryLength, keyLength] table for queries at positions queryOffset.. .</summary>
    public static int[] Table(int queryLength, int keyLength, bool bidirectional, int numBuckets, int maxDistance, int queryOffset = 0)
    {
        var t = new int[queryLength * keyLength];
        for (int i = 0; i < queryLength; i++)
            for (int j = 0; j < keyLength; j++)
                t[i * keyLength + j] = Bucket(j - (i + queryOffset), bidirectional, numBuckets, maxDistance);
        return t;
    }
}
