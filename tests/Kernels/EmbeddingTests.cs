using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class EmbeddingTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int> Sizes => new(Check.AwkwardSizes);

    const int Vocab = 50;

    /// <summary>Three prompts, used by the examples in a mixed order; prompt 1 appears once.</summary>
    static readonly int[] PromptIndex = [2, 0, 2, 1, 0];

    static int[] RandomIds(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(Vocab)).ToArray();
    }

    [Theory, MemberData(nameof(Sizes))]
    public void ForwardWithPromptsMatchesReference(int dim)
    {
        int batch = PromptIndex.Length, length = 1 + dim % 6, promptLength = 4, numPrompts = 3;
        var table = Check.Random(Vocab * dim, 1);
        var prompts = Check.Random(numPrompts * promptLength * dim, 2);
        var ids = RandomIds(batch * length, 3);
        var y = RunForward(table, dim, ids, prompts, PromptIndex, batch, length, promptLength);
        var expected = new float[y.Length];
        EmbeddingReference.Forward<float>(table, ids, prompts, PromptIndex, expected, batch, length, promptLength, dim);
        // Exact: rows are copied.
        Check.Close(expected, y, 0, "embedding with prompts");
    }

    public static TheoryData<WeightPrecision, int> HalfTableCases()
    {
        var data = new TheoryData<WeightPrecision, int>();
        foreach (var p in new[] { WeightPrecision.Fp16, WeightPrecision.Bf16 })
            foreach (int dim in Check.AwkwardSizes)
                data.Add(p, dim);
        return data;
    }

    /// <summary>A table stored as fp16 or bf16 gives the rows of the rounded table exactly: the
    /// shader widens each half to the fp32 it stands for. Odd dims put rows at odd half offsets.</summary>
    [Theory, MemberData(nameof(HalfTableCases))]
    public void HalfTablesGiveTheRoundedRows(WeightPrecision precision, int dim)
    {
        int batch = PromptIndex.Length, length = 1 + dim % 6, promptLength = 4, numPrompts = 3;
        // Magnitudes across fp16's normal range and into its subnormals.
        var table = Check.Random(Vocab * dim, 13).Select((v, i) => v * MathF.Pow(2, i % 40 - 25)).ToArray();
        var prompts = Check.Random(numPrompts * promptLength * dim, 14);
        var ids = RandomIds(batch * length, 15);
        var y = RunForward(table, dim, ids, prompts, PromptIndex, batch, length, promptLength, precision);
        HalfFloat.Round(table, precision);
        var expected = new float[y.Length];
        EmbeddingReference.Forward<float>(table, ids, prompts, PromptIndex, expected, batch, length, promptLength, dim);
        Check.Close(expected, y, 0, $"{precision} embedding");
    }

    /// <summary>A table stored as int8 gives the dequantised rows exactly (q · scale, one fp32
    /// product on both sides), a row of zeros included. Odd dims put rows at odd byte offsets
    /// within the 32-bit words the shader reads.</summary>
    [Theory, MemberData(nameof(Sizes))]
    public void Int8TablesGiveTheDequantisedRows(int dim)
    {
        int batch = PromptIndex.Length, length = 1 + dim % 6, promptLength = 4, numPrompts = 3;
        // Rows of very different magnitudes, so each has its own scale; row 1 all zeros.
        var table = Check.Random(Vocab * dim, 23).Select((v, i) => i / dim == 1 ? 0f : v * MathF.Pow(2, i / dim % 30 - 15)).ToArray();
        var prompts = Check.Random(numPrompts * promptLength * dim, 24);
        var ids = RandomIds(batch * length, 25);
        ids[0] = 1;
        var y = RunForward(table, dim, ids, prompts, PromptIndex, batch, length, promptLength, WeightPrecision.Int8);
        Int8Rows.Round(table, dim);
        var expected = new float[y.Length];
        EmbeddingReference.Forward<float>(table, ids, prompts, PromptIndex, expected, batch, length, promptLength, dim);
        Check.Close(expected, y, 0, "int8 embedding");
    }

    [Theory, MemberData(nameof(Sizes))]
    public void ForwardWithoutPromptsMatchesReference(int length)
    {
        const int batch = 3, dim = 8;
        var table = Check.Random(Vocab * dim, 4);
        var ids = RandomIds(batch * length, 5);
        var y = RunForward(table, dim, ids, null, null, batch, length, 0);
        var expected = new float[y.Length];
        EmbeddingReference.Forward<float>(table, ids, [], [], expected, batch, length, 0, dim);
        // Exact: rows are copied.
        Check.Close(expected, y, 0, "embedding without prompts");
    }

    [Fact]
    public void IndicesOutOfRangeGiveZeroRows()
    {
        const int dim = 7, promptLength = 2, numPrompts = 2;
        var table = Check.Random(Vocab * dim, 6);
        var prompts = Check.Random(numPrompts * promptLength * dim, 12);
        int[] ids = [3, -1, Vocab, int.MaxValue, int.MinValue, Vocab - 1];
        int[] promptIndex = [1, -1, numPrompts];
        int length = ids.Length / promptIndex.Length, batch = promptIndex.Length;
        var y = RunForward(table, dim, ids, prompts, promptIndex, batch, length, promptLength);
        var expected = new float[y.Length];
        EmbeddingReference.Forward<float>(table, ids, prompts, promptIndex, expected, batch, length, promptLength, dim);
        Assert.Equal(expected, y);
        int seq = promptLength + length;
        foreach (int row in new[] { 1 * seq + 0, 1 * seq + 1, 2 * seq + 0, 2 * seq + 1, promptLength + 1, 1 * seq + promptLength, 1 * seq + promptLength + 1, 2 * seq + promptLength })
            Assert.All(y.AsSpan(row * dim, dim).ToArray(), v => Assert.Equal(0f, v));
    }

    [Theory, MemberData(nameof(Sizes))]
    public void PromptGradientMatchesReference(int dim)
    {
        int batch = PromptIndex.Length, length = 3, promptLength = 4, numPrompts = 4;
        var dX = Check.Random(batch * (promptLength + length) * dim, 7);
        using var gdX = GpuBuffer.From<float>(Ctx, dX);
        using var gIndex = GpuBuffer.From<int>(Ctx, PromptIndex);
        // NaN everywhere first: the kernel must overwrite, including prompt 3 that no example uses.
        using var gdP = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(float.NaN, numPrompts * promptLength * dim).ToArray());
        using (var g = new CommandGraph(Ctx))
        {
            EmbeddingKernel.PromptGradient(g, gdX, gIndex, gdP, batch, length, promptLength, dim);
            g.Run();
        }
        var expected = new float[numPrompts * promptLength * dim];
        EmbeddingReference.PromptGradient<float>(dX, PromptIndex, expected, batch, length, promptLength, dim);
        // Exact: the same float additions in the same (batch) order.
        Check.Close(expected, gdP.Download<float>(), 0, "prompt gradient");
    }

    [Fact]
    public void PromptGradientReferenceMatchesFiniteDifferences()
    {
        int batch = PromptIndex.Length, length = 2, promptLength = 3, dim = 7, numPrompts = 3;
        var table = FiniteDifference.ToDouble(Check.Random(Vocab * dim, 8));
        var ids = RandomIds(batch * length, 9);
        var prompts = FiniteDifference.ToDouble(Check.Random(numPrompts * promptLength * dim, 10));
        var w = FiniteDifference.ToDouble(Check.Random(batch * (promptLength + length) * dim, 11));
        var numeric = FiniteDifference.Gradient(prompts, p =>
        {
            var y = new double[w.Length];
            EmbeddingReference.Forward<double>(table, ids, p, PromptIndex, y, batch, length, promptLength, dim);
            return FiniteDifference.Dot(w, y);
        });
        var analytic = new double[prompts.Length];
        EmbeddingReference.PromptGradient<double>(w, PromptIndex, analytic, batch, length, promptLength, dim);
        // Linear in the prompts, so only rounding of the differences remains (~1e-16 / h).
        Assert.True(FiniteDifference.MaxRelativeError(numeric, analytic) < 1e-8);
    }

    float[] RunForward(float[] table, int dim, int[] ids, float[]? prompts, int[]? promptIndex, int batch, int length, int promptLength,
                       WeightPrecision precision = WeightPrecision.Fp32)
    {
        using var gTable = new SplitTensor(Ctx, table.Length / dim, dim, "table", precision);
        gTable.Upload(table);
        using var gIds = GpuBuffer.From<int>(Ctx, ids);
        using var gPrompts = prompts is null ? null : GpuBuffer.From<float>(Ctx, prompts);
        using var gIndex = promptIndex is null ? null : GpuBuffer.From<int>(Ctx, promptIndex);
        int n = batch * (promptLength + length) * dim;
        using var gy = GpuBuffer.From<float>(Ctx, Enumerable.Repeat(float.NaN, n).ToArray());
        using (var g = new CommandGraph(Ctx))
        {
            EmbeddingKernel.Forward(g, gTable, gIds, gPrompts, gIndex, gy, batch, length, promptLength, dim);
            g.Run();
        }
        return gy.Download<float>();
    }
}
