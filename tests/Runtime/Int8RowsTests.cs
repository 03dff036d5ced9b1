using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>The int8 quantiser of SPEC.md's "int8 storage of frozen weights" against values
/// worked out by hand: scale = max |w| / 127 per row, q = round half to even of w / scale,
/// clamped to ±127, and q · scale the value the model computes with.</summary>
public sealed class Int8RowsTests
{
    /// <summary>Rows whose scales are exact (1 and 2), so every w / scale is exact and the ties
    /// are real ties: 2.5 → 2, -2.5 → -2, 3.5 → 4, 0.5 → 0, 1.5 → 2 (to even, not away from
    /// zero); a row of zeros keeps scale 0 and stays zero.</summary>
    [Fact]
    public void RoundsHalfToEvenPerRowAndKeepsAZeroRowZero()
    {
        float[] rows =
        [
            127f, 2.5f, -2.5f, 3.5f, 0.5f, 1.5f, -0.5f, -127f,
            0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f,
            -254f, 5f, -5f, 7f, 1f, 3f, 0.9f, 253f,
        ];
        var q = new sbyte[rows.Length];
        var scales = new float[3];
        Int8Rows.Encode(rows, 8, q, scales);
        Assert.Equal([1f, 0f, 2f], scales);
        Assert.Equal(new sbyte[]
        {
            127, 2, -2, 4, 0, 2, 0, -127,
            0, 0, 0, 0, 0, 0, 0, 0,
            // -254/2 = -127; 5/2 = 2.5 → 2; 7/2 = 3.5 → 4; 1/2 = 0.5 → 0; 3/2 = 1.5 → 2; 0.45 → 0; 126.5 → 126
            -127, 2, -2, 4, 0, 2, 0, 126,
        }, q);

        var values = new float[rows.Length];
        Int8Rows.Decode(q, scales, 8, values);
        float[] expected =
        [
            127f, 2f, -2f, 4f, 0f, 2f, 0f, -127f,
            0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f,
            -254f, 4f, -4f, 8f, 0f, 4f, 0f, 252f,
        ];
        Assert.Equal(expected, values);
        // Round is Encode then Decode, row by row, in place.
        Int8Rows.Round(rows, 8);
        Assert.Equal(expected, rows);
    }

    /// <summary>Where 127 · (max / 127) is not max again in fp32, max / scale lands a hair above
    /// or below 127: the largest weight must still become ±127 exactly, never 128 (clamped) nor
    /// 126. The sweep asserts that it met both kinds of inexact scale.</summary>
    [Fact]
    public void TheLargestWeightBecomesExactly127WhateverTheScaleRoundsTo()
    {
        int above = 0, below = 0;
        var rng = new Random(7);
        var q = new sbyte[2];
        for (int i = 0; i < 10_000; i++)
        {
            float max = (float)(rng.NextDouble() * 10 + 1e-3);
            float scale = max / 127f;
            float ratio = max / scale;
            if (ratio > 127f) above++;
            if (ratio < 127f) below++;
            Assert.Equal(scale, Int8Rows.Quantize([max, -max], q));
            Assert.Equal(new sbyte[] { 127, -127 }, q);
        }
        Assert.True(above > 0 && below > 0, $"the sweep met {above} ratios above 127 and {below} below");
    }

    /// <summary>A row so small that max / 127 underflows fp32 has scale 0, and stays zero rather
    /// than turning into ±127 · 0 through w / 0.</summary>
    [Fact]
    public void ARowWhoseScaleUnderflowsStaysZero()
    {
        float[] row = [float.Epsilon, -float.Epsilon, 0f];
        var q = new sbyte[3];
        Assert.Equal(0f, Int8Rows.Quantize(row, q));
        Assert.Equal(new sbyte[3], q);
        Int8Rows.Round(row, 3);
        Assert.Equal([0f, 0f, 0f], row);
    }

    [Fact]
    public void TablesAreQuantisedByWholeRows()
    {
        Assert.Throws<ArgumentException>(() => Int8Rows.Round(new float[10], 4));
        Assert.Equal(64 * 100 + 4 * 64, WeightPrecision.Int8.TableBytes(64, 100));
        Assert.Equal(64 * 100 * 4, WeightPrecision.Fp32.TableBytes(64, 100));
    }
}
