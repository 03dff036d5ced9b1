using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

public sealed class AddTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<int> Sizes => new(Check.AwkwardSizes.Append(300 * 300));

    [Theory, MemberData(nameof(Sizes))]
    public void MatchesReference(int n)
    {
        var x = Check.Random(n, 1);
        var y = Check.Random(n, 2);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = GpuBuffer.From<float>(Ctx, y);
        using (var g = new CommandGraph(Ctx))
        {
            AddKernel.Forward(g, gx, gy, n, 0.5f);
            g.Run();
        }
        AddReference.Forward(x, y, 0.5f);
        // Exact: one fused multiply-add per element on both sides, at most one rounding apart.
        Check.Close(x, gx.Download<float>(), 1e-6, "add");
    }
}
