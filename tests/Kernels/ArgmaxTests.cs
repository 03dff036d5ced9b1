using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class ArgmaxTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int, int> Shapes => RowShapes.Covering((3, 32128));

    int[] RunGpu(float[] logits, int rows, int vocab)
    {
        using var gl = GpuBuffer.From<float>(Ctx, logits);
        using var gi = new GpuBuffer(Ctx, rows * 4L);
        using (var g = new CommandGraph(Ctx))
        {
            ArgmaxKernel.Forward(g, gl, gi, rows, vocab);
            g.Run();
        }
        return gi.Download<int>();
    }

    static int[] Reference(float[] logits, int rows, int vocab)
    {
        var ids = new int[rows];
        ArgmaxReference.Forward(logits, ids, rows, vocab);
        return ids;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void MatchesReference(int rows, int vocab)
    {
        var logits = Check.Random(rows * vocab, rows + vocab, 8f);
        // Indices are exact: no tolerance.
        Assert.Equal(Reference(logits, rows, vocab), RunGpu(logits, rows, vocab));
    }

    [Fact]
    public void TiesGoToTheLowestIndex()
    {
        // Each row holds its maximum at 1 to 4 random places, often in different invocations and
        // subgroups; the last row is constant.
        const int rows = 33, vocab = 300;
        var rng = new Random(41);
        var logits = Check.Random(rows * vocab, 41);
        var expected = new int[rows];
        for (int r = 0; r < rows - 1; r++)
        {
            var at = Enumerable.Range(0, 1 + rng.Next(4)).Select(_ => rng.Next(vocab)).ToArray();
            foreach (int j in at) logits[r * vocab + j] = 2f;
            expected[r] = at.Min();
        }
        Array.Fill(logits, 0.5f, (rows - 1) * vocab, vocab);
        Assert.Equal(expected, Reference(logits, rows, vocab));
        Assert.Equal(expected, RunGpu(logits, rows, vocab));
    }

    [Fact]
    public void NaNIsLargestAndSignedZerosTie()
    {
        float n = float.NaN, inf = float.PositiveInfinity;
        float[] logits =
        [
            -1, -0f, 0, -2,
            0, -0f, -1, -1,
            1, n, 5, n,
            -inf, -inf, -inf, -inf,
            -3, -2, inf, inf,
        ];
        int[] expected = [1, 0, 1, 0, 2];
        Assert.Equal(expected, Reference(logits, 5, 4));
        Assert.Equal(expected, RunGpu(logits, 5, 4));
    }
}
