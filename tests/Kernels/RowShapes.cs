using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>Shapes for the row kernels (one workgroup per row, a reduction along it).</summary>
public static class RowShapes
{
    /// <summary>Each awkward size once as the row count and once as the row width:
    /// (1, 7), (7, 33), (33, 129), (129, 300), (300, 1).</summary>
    public static IEnumerable<(int Rows, int Cols)> CoveringPairs()
    {
        var s = Check.AwkwardSizes;
        for (int i = 0; i < s.Length; i++) yield return (s[i], s[(i + 1) % s.Length]);
    }

    public static TheoryData<int, int> Covering(params (int Rows, int Cols)[] extra)
    {
        var data = new TheoryData<int, int>();
        foreach (var (rows, cols) in CoveringPairs().Concat(extra)) data.Add(rows, cols);
        return data;
    }
}
