using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
public sealed class ToHalfTests(GpuFixture f) : GpuTest(f)
{
    /// <summary>Values across fp16's range and past it (saturated at ±65504, infinities too),
    /// subnormal halves, NaN kept, from offsets that are multiples of 4 (read a vector at a time)
    /// and ones that are not, over lengths that leave a partial last quad, whose surplus halves
    /// are zero. Vulkan lets a device round the
    /// conversion toward zero rather than to nearest, so each half may be one unit below the
    /// reference's in magnitude.</summary>
    [SkippableTheory]
    [InlineData(0, 1), InlineData(3, 7), InlineData(5, 1000), InlineData(1, 300 * 300), InlineData(4, 1001), InlineData(0, 300 * 300)]
    public void MatchesReference(int offset, int n)
    {
        Skip.IfNot(Ctx.Capabilities.ShaderFloat16, "the device lacks fp16 arithmetic");
        var x = Check.Random(offset + n, 40);
        float[] specials = [1e6f, -1e6f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 65504f, 65519f, 3e-6f, -7e-8f, 0f, -0f, 1e-9f];
        for (int i = 0; i < n; i++) x[offset + i] *= MathF.Pow(2, i % 40 - 20);
        for (int i = 0; i < Math.Min(n, specials.Length); i++) x[offset + n - 1 - i] = specials[i];
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = new GpuBuffer(Ctx, ToHalfKernel.OutputBytes(n));
        using (var g = new CommandGraph(Ctx))
        {
            ToHalfKernel.Run(g, gx, offset, gy, n);
            g.Run();
        }
        var got = gy.Download<ushort>();
        var expected = new ushort[n];
        ToHalfReference.Run(x.AsSpan(offset, n), expected);
        for (int i = 0; i < n; i++)
        {
            bool nan = float.IsNaN(HalfFloat.FromFp16(expected[i]));
            bool ok = nan ? float.IsNaN(HalfFloat.FromFp16(got[i])) : got[i] == expected[i] || got[i] + 1 == expected[i] && (expected[i] & 0x7fff) != 0;
            Assert.True(ok, $"element {i}: {x[offset + i]:G9} became {got[i]:x4}, expected {expected[i]:x4}");
        }
        Assert.All(got[n..], h => Assert.Equal(0, h));
    }
}
