namespace VkPrompt.Runtime;

/// <summary>
/// A 2-D fp32 tensor [rows, cols] kept as consecutive row chunks, each its own
/// <see cref="GpuBuffer"/> no larger than the range a kernel may bind
/// (<see cref="GpuContext.MaxBindingBytes"/>) or the device can allocate at once. Tensors such as
/// a T5 embedding table can exceed maxStorageBufferRange (128 MiB on lavapipe and many GPUs);
/// kernels that read one dispatch once per chunk.
/// </summary>
public sealed class SplitTensor : IDisposable
{
    readonly List<(GpuBuffer Buffer, int FirstRow, int Rows)> chunks = new();
    bool disposed;

    public int Rows { get; }
    public int Cols { get; }
    public string Name { get; }
    public GpuContext Context { get; }

    /// <summary>The chunks in row order; chunk i holds rows [FirstRow, FirstRow + Rows).</summary>
    public IReadOnlyList<(GpuBuffer Buffer, int FirstRow, int Rows)> Chunks => chunks;

    public SplitTensor(GpuContext ctx, int rows, int cols, string name = "")
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        Context = ctx;
        Rows = rows;
        Cols = cols;
        Name = name;
        long rowBytes = (long)cols * sizeof(float);
        long limit = Math.Min(ctx.MaxBindingBytes, ctx.Capabilities.MaxMemoryAllocationSize);
        long rowsPerChunk = limit / rowBytes;
        if (rowsPerChunk == 0)
            throw new GpuException($"{name}: one row of {cols} floats ({rowBytes} bytes) exceeds the largest buffer a kernel can bind ({limit} bytes)");
        try
        {
            for (int first = 0; first < rows; first += (int)rowsPerChunk)
            {
                int n = (int)Math.Min(rowsPerChunk, rows - first);
                chunks.Add((new GpuBuffer(ctx, n * rowBytes, $"{name}[{chunks.Count}]"), first, n));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Writes the whole tensor from a row-major span of rows * cols floats.</summary>
    public void Upload(ReadOnlySpan<float> rowMajor)
    {
        if (rowMajor.Length != (long)Rows * Cols)
            throw new ArgumentException($"{Name}: expected {(long)Rows * Cols} floats ([{Rows}, {Cols}]), got {rowMajor.Length}", nameof(rowMajor));
        UploadRows(0, rowMajor);
    }

    /// <summary>Writes whole rows starting at <paramref name="firstRow"/>, straight from the
    /// caller's span into each chunk it overlaps, so a checkpoint can be streamed from a
    /// memory-mapped file piece by piece without a second full copy on the host.</summary>
    public void UploadRows(int firstRow, ReadOnlySpan<float> rows)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (rows.Length % Cols != 0)
            throw new ArgumentException($"{Name}: {rows.Length} floats are not a whole number of {Cols}-float rows", nameof(rows));
        int count = rows.Length / Cols;
        if (firstRow < 0 || (long)firstRow + count > Rows)
            throw new ArgumentOutOfRangeException(nameof(firstRow), $"{Name}: rows [{firstRow}, {(long)firstRow + count}) are outside [0, {Rows})");
        foreach (var (buffer, chunkFirst, chunkRows) in chunks)
        {
            int from = Math.Max(firstRow, chunkFirst);
            int to = Math.Min(firstRow + count, chunkFirst + chunkRows);
            if (from >= to) continue;
            buffer.Upload(rows.Slice((from - firstRow) * Cols, (to - from) * Cols), (long)(from - chunkFirst) * Cols);
        }
    }

    /// <summary>Reads the whole tensor back, row-major.</summary>
    public float[] Download()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var data = new float[(long)Rows * Cols];
        foreach (var (buffer, first, rows) in chunks)
            buffer.Download(data.AsSpan(first * Cols, rows * Cols));
        return data;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var c in chunks) c.Buffer.Dispose();
    }

    public override string ToString() => $"{Name} [{Rows}, {Cols}] in {chunks.Count} chunk(s)";
}
