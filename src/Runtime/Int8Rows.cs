using System.Numerics.Tensors;

namespace VkPrompt.Runtime;

/// <summary>
/// int8 storage of a frozen [rows, cols] weight (docs/numerics.md, SPEC.md's "int8 storage of
/// frozen weights"): each row r gets one fp32 scale, <c>scale_r = max_j |w[r, j]| / 127</c>, and
/// each weight becomes <c>q = round_half_to_even(w / scale_r)</c> clamped to [-127, 127], all in
/// fp32. The model computes with <c>q * scale_r</c> (one fp32 product, exact to the last bit on
/// every device), which <see cref="Round"/> gives the CPU backend and the tests, so they see what
/// the kernels widen. A row of zeros keeps scale 0 and stays zero; so does a row whose scale
/// underflows fp32, which w / 0 would otherwise turn into ±127 times 0.
/// </summary>
internal static class Int8Rows
{
    /// <summary>The largest magnitude stored: -128 is left out so that the range is symmetric.</summary>
    public const int Max = 127;

    /// <summary>Quantises one row into <paramref name="q"/> and returns its scale.</summary>
    public static float Quantize(ReadOnlySpan<float> row, Span<sbyte> q)
    {
        if (q.Length != row.Length) throw new ArgumentException($"{row.Length} values need {row.Length} bytes, got {q.Length}", nameof(q));
        float scale = row.IsEmpty ? 0f : Math.Abs(TensorPrimitives.MaxMagnitude(row)) / Max;
        if (scale == 0f)
        {
            q.Clear();
            return 0f;
        }
        for (int j = 0; j < row.Length; j++)
            q[j] = (sbyte)Math.Clamp(MathF.Round(row[j] / scale, MidpointRounding.ToEven), -Max, Max);
        return scale;
    }

    /// <summary>Quantises whole rows of <paramref name="cols"/> values: bytes row-major into
    /// <paramref name="q"/>, one scale per row into <paramref name="scales"/>.</summary>
    public static void Encode(ReadOnlySpan<float> rows, int cols, Span<sbyte> q, Span<float> scales)
    {
        int count = RowCount(rows.Length, cols);
        if (q.Length != rows.Length || scales.Length != count)
            throw new ArgumentException($"{count} rows of {cols} need {rows.Length} bytes and {count} scales, got {q.Length} and {scales.Length}");
        for (int r = 0; r < count; r++)
            scales[r] = Quantize(rows.Slice(r * cols, cols), q.Slice(r * cols, cols));
    }

    /// <summary>The values stored bytes and scales stand for: <c>q * scale</c> in fp32.</summary>
    public static void Decode(ReadOnlySpan<sbyte> q, ReadOnlySpan<float> scales, int cols, Span<float> values)
    {
        int count = RowCount(q.Length, cols);
        if (values.Length != q.Length || scales.Length != count)
            throw new ArgumentException($"{count} rows of {cols} need {q.Length} values and {count} scales, got {values.Length} and {scales.Length}");
        for (int r = 0; r < count; r++)
        {
            float scale = scales[r];
            for (int j = 0; j < cols; j++) values[r * cols + j] = q[r * cols + j] * scale;
        }
    }

    /// <summary>Replaces each row of <paramref name="cols"/> values by the values its int8
    /// storage stands for, one row at a time (no second copy of the whole span).</summary>
    public static void Round(Span<float> rows, int cols)
    {
        int count = RowCount(rows.Length, cols);
        var q = cols <= 4096 ? stackalloc sbyte[cols] : new sbyte[cols];
        Span<float> scale = stackalloc float[1];
        for (int r = 0; r < count; r++)
        {
            var row = rows.Slice(r * cols, cols);
            scale[0] = Quantize(row, q);
            Decode(q, scale, cols, row);
        }
    }

    static int RowCount(int length, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if (length % cols != 0) throw new ArgumentException($"{length} values are not a whole number of {cols}-value rows");
        return length / cols;
    }
}
