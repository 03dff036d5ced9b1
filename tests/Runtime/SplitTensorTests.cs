using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>A context that pretends maxStorageBufferRange is 64 KiB, so a 1000 x 40 table
/// (160 000 bytes) is split in three chunks of at most 409 rows. In the "gpu" collection so it
/// does not compete with the shared context's tests for the queue and the CPU.</summary>
[Collection("gpu")]
public sealed class SplitTensorTests : IDisposable
{
    const long Range = 64 * 1024;
    const int Rows = 1000, Cols = 40;

    readonly GpuContext ctx = GpuContext.Create(new GpuOptions { Validation = true, PipelineCacheDirectory = null, MaxStorageBufferRangeOverride = Range });

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

    [Fact]
    public void CommandGraphRejectsAPlainBufferBeyondTheRange()
    {
        int n = (int)(Range / 4) + 1;
        using var big = new GpuBuffer(ctx, n * 4L, "whole table");
        using var y = new GpuBuffer(ctx, 4, "y");
        using var g = new CommandGraph(ctx);
        var e = Assert.Throws<GpuException>(() => ReluKernel.Forward(g, big, y, 1));
        Assert.Contains("whole table", e.Message);
        Assert.Contains($"exceeds maxStorageBufferRange ({Range})", e.Message);
        Assert.Contains("split", e.Message);
    }
}
