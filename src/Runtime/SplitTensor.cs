namespace VkPrompt.Runtime;

/// <summary>
/// A 2-D tensor [rows, cols] of fp32 values, or of fp16 / bf16 halves or int8 rows for frozen
/// weights (<see cref="Precision"/>), kept as consecutive row chunks, each its own
/// <see cref="GpuBuffer"/> no larger than the range a kernel may bind
/// (<see cref="GpuContext.MaxBindingBytes"/>) or the device can allocate at once. Tensors such as
/// a T5 embedding table can exceed maxStorageBufferRange (128 MiB on lavapipe and many GPUs);
/// kernels that read one dispatch once per chunk. The host side is always fp32: uploads round
/// to the stored precision and downloads widen back. An int8 chunk holds its bytes four to a
/// 32-bit word (its buffer padded to whole words) and its rows' fp32 scales in a buffer beside
/// it (<see cref="Scales"/>), which the kernels bind next to the bytes.
/// </summary>
internal sealed class SplitTensor : IDisposable
{
    readonly List<(GpuBuffer Buffer, int FirstRow, int Rows)> chunks = new();
    readonly List<GpuBuffer> scales = new();
    bool disposed;

    public int Rows { get; }
    public int Cols { get; }
    public string Name { get; }
    public GpuContext Context { get; }
    /// <summary>How the values are stored on the device.</summary>
    public WeightPrecision Precision { get; }

    /// <summary>The precision uploads round to: <see cref="Precision"/>, or bf16 stored as fp16
    /// (<see cref="HalfFloat.EncodeBf16AsFp16"/>) for weights the matrix units read.</summary>
    public WeightPrecision Rounding { get; }

    /// <summary>The chunks in row order; chunk i holds rows [FirstRow, FirstRow + Rows).</summary>
    public IReadOnlyList<(GpuBuffer Buffer, int FirstRow, int Rows)> Chunks => chunks;

    /// <summary>For int8, chunk i's row scales (fp32, one per row of the chunk); empty otherwise.</summary>
    public IReadOnlyList<GpuBuffer> Scales => scales;

    /// <param name="ctx">the context the chunks are allocated on.</param>
    /// <param name="rows">the table's rows, split across chunks by whole rows.</param>
    /// <param name="cols">the table's columns.</param>
    /// <param name="name">a name for diagnostics.</param>
    /// <param name="precision">the precision the values are stored in.</param>
    /// <param name="rounding">the precision values are rounded to on upload, where it differs
    /// from the stored one: only bf16 stored as fp16 (<paramref name="precision"/> fp16).</param>
    public SplitTensor(GpuContext ctx, int rows, int cols, string name = "", WeightPrecision precision = WeightPrecision.Fp32, WeightPrecision? rounding = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        Context = ctx;
        Rows = rows;
        Cols = cols;
        Name = name;
        Precision = precision;
        Rounding = rounding ?? precision;
        if (Rounding != precision && (Rounding, precision) != (WeightPrecision.Bf16, WeightPrecision.Fp16))
            throw new ArgumentException($"{name}: values rounded to {Rounding.Name()} cannot be stored as {precision.Name()}; only bf16 can be stored as fp16", nameof(rounding));
        try
        {
            foreach (var (first, n, bytes, scaleBytes) in Layout(rows, cols, precision, Math.Min(ctx.MaxBindingBytes, ctx.Capabilities.MaxMemoryAllocationSize), name))
            {
                chunks.Add((new GpuBuffer(ctx, bytes, $"{name}[{chunks.Count}]"), first, n));
                if (scaleBytes > 0) scales.Add(new GpuBuffer(ctx, scaleBytes, $"{name}[{scales.Count}].scales"));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The buffers a [rows, cols] table stored as <paramref name="precision"/> takes, in
    /// order: each chunk's first row, rows, bytes and (int8) its scales' bytes, 0 otherwise. The
    /// constructor allocates exactly these, and a counting backend counts them (the memory plan).</summary>
    /// <param name="rows">the table's rows.</param>
    /// <param name="cols">the table's columns.</param>
    /// <param name="precision">how the values are stored.</param>
    /// <param name="limit">the largest buffer a chunk (or its scales) may be: the binding range, or
    /// the device's largest allocation, whichever is less.</param>
    /// <param name="name">the table's name, for the message.</param>
    /// <exception cref="GpuException">One row exceeds <paramref name="limit"/>.</exception>
    internal static IEnumerable<(int FirstRow, int Rows, long Bytes, long ScaleBytes)> Layout(int rows, int cols, WeightPrecision precision, long limit, string name = "")
    {
        long rowBytes = (long)cols * precision.ElementBytes();
        bool int8 = precision == WeightPrecision.Int8;
        // Less 3 bytes of word padding for int8, and rows few enough for the scales' binding.
        long rowsPerChunk = int8 ? Math.Min((limit - 3) / rowBytes, limit / sizeof(float)) : limit / rowBytes;
        if (rowsPerChunk == 0)
            throw new GpuException($"{name}: one row of {cols} {precision.Name()} values ({rowBytes} bytes) exceeds the largest buffer a kernel can bind ({limit} bytes)");
        rowsPerChunk = Math.Min(rowsPerChunk, rows);
        var layout = new List<(int, int, long, long)>();
        for (int first = 0; first < rows; first += (int)rowsPerChunk)
        {
            int n = (int)Math.Min(rowsPerChunk, rows - first);
            layout.Add(int8 ? (first, n, (n * rowBytes + 3) & ~3L, (long)n * sizeof(float)) : (first, n, n * rowBytes, 0L));
        }
        return layout;
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
    /// memory-mapped file piece by piece without a second full copy on the host (halves take one
    /// transient copy of the piece).</summary>
    /// <exception cref="OverflowException">The tensor is fp16 and a value is beyond its range.</exception>
    public void UploadRows(int firstRow, ReadOnlySpan<float> rows)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (rows.Length % Cols != 0)
            throw new ArgumentException($"{Name}: {rows.Length} floats are not a whole number of {Cols}-float rows", nameof(rows));
        int count = rows.Length / Cols;
        if (firstRow < 0 || (long)firstRow + count > Rows)
            throw new ArgumentOutOfRangeException(nameof(firstRow), $"{Name}: rows [{firstRow}, {(long)firstRow + count}) are outside [0, {Rows})");
        for (int c = 0; c < chunks.Count; c++)
        {
            var (buffer, chunkFirst, chunkRows) = chunks[c];
            int from = Math.Max(firstRow, chunkFirst);
            int to = Math.Min(firstRow + count, chunkFirst + chunkRows);
            if (from >= to) continue;
            var part = rows.Slice((from - firstRow) * Cols, (to - from) * Cols);
            long at = (long)(from - chunkFirst) * Cols;
            if (Precision == WeightPrecision.Fp32) buffer.Upload(part, at);
            else if (Precision == WeightPrecision.Int8) UploadInt8(c, part, from - chunkFirst);
            else UploadHalves(buffer, part, at);
        }
    }

    void UploadInt8(int chunk, ReadOnlySpan<float> rows, int firstRow)
    {
        var q = new sbyte[rows.Length];
        var rowScales = new float[rows.Length / Cols];
        Int8Rows.Encode(rows, Cols, q, rowScales);
        chunks[chunk].Buffer.Upload<sbyte>(q, (long)firstRow * Cols);
        scales[chunk].Upload<float>(rowScales, firstRow);
    }

    void UploadHalves(GpuBuffer buffer, ReadOnlySpan<float> values, long at)
    {
        var halves = new ushort[values.Length];
        if (Rounding == WeightPrecision.Bf16 && Precision == WeightPrecision.Fp16) HalfFloat.EncodeBf16AsFp16(values, halves);
        else HalfFloat.Encode(values, halves, Precision);
        buffer.Upload<ushort>(halves, at);
    }

    /// <summary>Reads the whole tensor back, row-major.</summary>
    public float[] Download()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var data = new float[(long)Rows * Cols];
        for (int c = 0; c < chunks.Count; c++)
        {
            var (buffer, first, rows) = chunks[c];
            var part = data.AsSpan(first * Cols, rows * Cols);
            if (Precision == WeightPrecision.Fp32) buffer.Download(part);
            else if (Precision == WeightPrecision.Int8) Int8Rows.Decode(buffer.Download<sbyte>().AsSpan(0, part.Length), scales[c].Download<float>(), Cols, part);
            else HalfFloat.Decode(buffer.Download<ushort>(), part, Precision);
        }
        return data;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var c in chunks) c.Buffer.Dispose();
        foreach (var b in scales) b.Dispose();
    }

    public override string ToString() =>
        $"{Name} [{Rows}, {Cols}] {(Rounding == Precision ? Precision.Name() : $"{Rounding.Name()} as {Precision.Name()}")} in {chunks.Count} chunk(s)";
}
