using VkPrompt.Model;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Model;

public sealed class RelativePositionTests
{
    /// <summary>The table keeps one bucket per diagonal; every (query, key) pair must find its own
    /// bucket, relative = j - (i + queryOffset), where the kernels look (BucketIndex): square
    /// (encoder), causal with a KV cache's offset (generation), and more keys than queries.</summary>
    [Theory]
    [InlineData(7, 7, true, 0)]
    [InlineData(300, 300, true, 0)]
    [InlineData(5, 5, false, 0)]
    [InlineData(1, 40, false, 39)]
    [InlineData(3, 200, true, 17)]
    [InlineData(200, 3, false, 0)]
    public void TableHoldsTheBucketOfEveryPairAtItsDiagonal(int queryLength, int keyLength, bool bidirectional, int queryOffset)
    {
        var table = RelativePosition.Table(queryLength, keyLength, bidirectional, 32, 128, queryOffset);
        var shape = new AttentionShape(1, 1, queryLength, keyLength);
        Assert.Equal(shape.Diagonals, table.Length);
        for (int i = 0; i < queryLength; i++)
            for (int j = 0; j < keyLength; j++)
                Assert.Equal(RelativePosition.Bucket(j - (i + queryOffset), bidirectional, 32, 128), table[shape.BucketIndex(i, j)]);
    }

    /// <summary>Hugging Face's buckets at the edges that matter (num_buckets 32, max_distance 128):
    /// exact below 8 (16 one way), logarithmic to 128, clamped beyond.</summary>
    [Theory]
    [InlineData(0, true, 0)]
    [InlineData(1, true, 17)]
    [InlineData(-1, true, 1)]
    [InlineData(-7, true, 7)]
    [InlineData(-8, true, 8)]
    [InlineData(127, true, 31)]
    [InlineData(-1000, true, 15)]
    [InlineData(3, false, 0)]
    [InlineData(-15, false, 15)]
    [InlineData(-16, false, 16)]
    [InlineData(-1000, false, 31)]
    public void BucketMatchesHuggingFace(int relative, bool bidirectional, int expected) =>
        Assert.Equal(expected, RelativePosition.Bucket(relative, bidirectional, 32, 128));

    /// <summary>The range T5Config accepts (issue 21 finding 5: num_buckets >= 4, max_distance >
    /// num_buckets / 2) is exactly where every bucket, both directions, lands in [0, num_buckets):
    /// at its smallest max_distance and beyond, and just below it the decoder's buckets break.</summary>
    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(32)]
    [InlineData(33)]
    public void BucketsStayInTheTableOverTheRangeTheConfigAccepts(int numBuckets)
    {
        foreach (int maxDistance in new[] { numBuckets / 2 + 1, numBuckets / 2 + 2, 128 })
        {
            Assert.Null(new T5Config { RelativeAttentionNumBuckets = numBuckets, RelativeAttentionMaxDistance = maxDistance }.Problem());
            foreach (bool bidirectional in new[] { true, false })
                for (int relative = -1000; relative <= 1000; relative++)
                    Assert.InRange(RelativePosition.Bucket(relative, bidirectional, numBuckets, maxDistance), 0, numBuckets - 1);
        }
        int tooClose = numBuckets / 2;
        Assert.NotNull(new T5Config { RelativeAttentionNumBuckets = numBuckets, RelativeAttentionMaxDistance = tooClose }.Problem());
        Assert.Contains(Enumerable.Range(-1000, 2001), r => RelativePosition.Bucket(r, false, numBuckets, tooClose) is var b && (b < 0 || b >= numBuckets));
    }
}
