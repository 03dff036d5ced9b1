using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>A context that pretends maxStorageBufferRange is 64 KiB, so a 1000 x 40 table
/// (160 000 bytes) is split in three chunks of at most 409 rows. In a GPU collection
/// (<see cref="GpuCollections"/>) so that it runs alone among that collection's tests.</summary>
[Collection(GpuCollections.Rest)]
public sealed class SplitTensorTests : IDisposable
{
    const long Range = 64 * 1024;
    const int Rows = 1000, Cols = 40;

    readonly GpuContext ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, MaxStorageBufferRangeOverride = Range });

    public void Dispose()
    {
        var errors = ctx.Validation.Errors.ToList();
        ctx.Dispose();
        Assert.Empty(errors);
    }

    [Fact]
    public void ChunksRespectTheBindingLimitAndCoverEveryRow()
    {
        using var t = new SplitTensor(ctx, Rows, Cols, "table");
        Assert.Equal(3, t.Chunks.Count);
        int next = 0;
        foreach (var (buffer, first, rows) in t.Chunks)
        {
            Assert.Equal(next, first);
            Assert.True(buffer.Bytes <= Range);
            Assert.Equal((long)rows * Cols * 4, buffer.Bytes);
            next += rows;
        }
        Assert.Equal(Rows, next);
    }

    [Fact]
    public void StreamedUploadRoundTrips()
    {
        var data = Check.Random(Rows * Cols, 1);
        using var t = new SplitTensor(ctx, Rows, Cols, "table");
        // Pieces of 123 rows straddle both chunk boundaries (409, 818).
        for (int first = 0; first < Rows; first += 123)
        {
            int rows = Math.Min(123, Rows - first);
            t.UploadRows(first, data.AsSpan(first * Cols, rows * Cols));
        }
        Assert.Equal(data, t.Download());
        Assert.Throws<ArgumentOutOfRangeException>(() => t.UploadRows(Rows - 1, new float[2 * Cols]));
        Assert.Throws<ArgumentException>(() => t.UploadRows(0, new float[Cols + 1]));
        Assert.Throws<ArgumentException>(() => t.Upload(new float[Cols]));
    }

    [Fact]
    public void EmbeddingGathersRowsFromEveryChunk()
    {
        var data = Check.Random(Rows * Cols, 2);
        using var table = new SplitTensor(ctx, Rows, Cols, "table");
        table.Upload(data);
        // Both sides of each chunk boundary, the ends, and rows inside each chunk.
        int[] ids = [0, 408, 409, 817, 818, 999, 200, 600, 900, 5, 999, 0];
        int[] promptIndex = [1, 0, 1];
        const int batch = 3, length = 4, promptLength = 2, numPrompts = 2;
        var prompts = Check.Random(numPrompts * promptLength * Cols, 3);
        using var gIds = GpuBuffer.From<int>(ctx, ids);
        using var gPrompts = GpuBuffer.From<float>(ctx, prompts);
        using var gIndex = GpuBuffer.From<int>(ctx, promptIndex);
        int n = batch * (promptLength + length) * Cols;
        using var gy = GpuBuffer.From<float>(ctx, Enumerable.Repeat(float.NaN, n).ToArray());
        using (var g = new CommandGraph(ctx))
        {
            EmbeddingKernel.Forward(g, table, gIds, gPrompts, gIndex, gy, batch, length, promptLength, Cols);
            Assert.Equal(3, g.DispatchCount);
            g.Run();
        }
        var expected = new float[n];
        EmbeddingReference.Forward<float>(data, ids, prompts, promptIndex, expected, batch, length, promptLength, Cols);
        Assert.Equal(expected, gy.Download<float>());
    }

    /// <summary>Halves take two bytes a value, so a chunk holds twice the rows: 1000 x 40 in 16
    /// bits is 80 000 bytes, chunks of 819 and 181 rows. Both products the T5 program makes with
    /// a split table, y·Eᵀ (chunks are column ranges of the output) and dlogits·E (chunks are
    /// slices of the sum), read every chunk in its precision.</summary>
    [Theory, InlineData(WeightPrecision.Fp16), InlineData(WeightPrecision.Bf16)]
    public void HalfTablesRoundTripAndFeedProductsFromEveryChunk(WeightPrecision precision)
    {
        var data = Check.Random(Rows * Cols, 4);
        var rounded = data.ToArray();
        HalfFloat.Round(rounded, precision);
        using (var t = new SplitTensor(ctx, Rows, Cols, "table", precision))
        {
            Assert.Equal([819, 181], t.Chunks.Select(c => c.Rows));
            Assert.All(t.Chunks, c => Assert.Equal((long)c.Rows * Cols * 2, c.Buffer.Bytes));
            t.Upload(data);
            Assert.Equal(rounded, t.Download());
        }
        AssertProductsReadEveryChunk(precision, Rows, data, rounded);
    }

    /// <summary>int8 takes a byte a value, so a chunk holds four times fp32's rows: 3000 x 40
    /// is 120 000 bytes, chunks of 1638 (the range less a word's padding, over 40) and 1362 rows,
    /// each with a buffer of its rows' scales. Uploads streamed in slices that straddle the
    /// chunks quantise each row on its own, and both products read every chunk with its scales.</summary>
    [Fact]
    public void Int8TablesRoundTripAndFeedProductsFromEveryChunk()
    {
        const int rows = 3000;
        // Rows of very different magnitudes: each row's own scale matters.
        var data = Check.Random(rows * Cols, 7).Select((v, i) => v * MathF.Pow(2, i / Cols % 20 - 10)).ToArray();
        var rounded = data.ToArray();
        Int8Rows.Round(rounded, Cols);
        using (var t = new SplitTensor(ctx, rows, Cols, "table", WeightPrecision.Int8))
        {
            Assert.Equal([1638, 1362], t.Chunks.Select(c => c.Rows));
            Assert.All(t.Chunks, c => Assert.Equal((long)c.Rows * Cols, c.Buffer.Bytes));
            Assert.Equal(t.Chunks.Select(c => (long)c.Rows * 4), t.Scales.Select(s => s.Bytes));
            for (int first = 0; first < rows; first += 1500)
            {
                int n = Math.Min(1500, rows - first);
                t.UploadRows(first, data.AsSpan(first * Cols, n * Cols));
            }
            Assert.Equal(rounded, t.Download());
        }
        AssertProductsReadEveryChunk(WeightPrecision.Int8, rows, data, rounded);
    }

    /// <summary>Both products the T5 program makes with a split table, y·Eᵀ (chunks are column
    /// ranges of the output) and dlogits·E (chunks are slices of the sum), through the GPU
    /// backend, against the reference on the values the table stands for.</summary>
    void AssertProductsReadEveryChunk(WeightPrecision precision, int rows, float[] data, float[] rounded)
    {
        const int m = 5;
        using var be = new GpuBackend(ctx);
        using var table = be.Table(rows, Cols, "table", precision);
        be.Upload(table, data);
        var y = Check.Random(m * Cols, 5);
        var dLogits = Check.Random(m * rows, 6);
        using var gy = be.Floats(y.Length, "y");
        using var gdLogits = be.Floats(dLogits.Length, "dlogits");
        using var logits = be.Floats(m * rows, "logits");
        using var dy = be.Floats(m * Cols, "dy");
        be.Upload(gy, y);
        be.Upload(gdLogits, dLogits);
        var forward = MatMulSpec.Rows(m, rows, Cols, transposeB: true);
        var backward = MatMulSpec.Rows(m, Cols, rows);
        using (var step = be.Record(() =>
        {
            be.MatMul(gy, table, logits, forward);
            be.MatMul(gdLogits, table, dy, backward);
        }))
            step.Run();

        var expectedLogits = new float[m * rows];
        MatMulReference.Run(y, rounded, expectedLogits, forward);
        var expectedDy = new float[m * Cols];
        MatMulReference.Run(dLogits, rounded, expectedDy, backward);
        var actual = new float[m * rows];
        be.Download(logits, actual);
        // The fp32 tolerance of MatMulTests: the device widens the stored values exactly.
        Check.Close(expectedLogits, actual, 1e-5, $"{precision} y·Eᵀ");
        actual = new float[m * Cols];
        be.Download(dy, actual);
        Check.Close(expectedDy, actual, 1e-5, $"{precision} dlogits·E");
    }

    [Fact]
    public void CommandGraphRejectsAPlainBufferBeyondTheRange()
    {
        int n = (int)(Range / 4) + 1;
        using var big = new GpuBuffer(ctx, n * 4L, "whole table");
        using var y = new GpuBuffer(ctx, 4, "y");
        using var g = new CommandGraph(ctx);
        var e = Assert.Throws<GpuException>(() => ReluKernel.Forward(g, big, y, 1));
        Assert.Contains("whole table", e.Message);
        Assert.Contains($"exceeds the largest buffer a kernel can bind (maxStorageBufferRange {Range})", e.Message);
        Assert.True(e.DoesNotFit, "smaller work would fit");
    }
}
