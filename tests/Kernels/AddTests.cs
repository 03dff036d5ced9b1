using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Kernels;

[Collection(GpuCollections.Kernels)]
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

    /// <summary>A residual branch dropped and added to the stream into an output of its own, in
    /// one pass: bit for bit DropoutReference then AddReference, x left as it was.</summary>
    [Theory, MemberData(nameof(Sizes))]
    public void DropsTheBranchAndAddsIntoAnOutputOfItsOwn(int n)
    {
        const uint seedValue = 99, stream = 5;
        var x = Check.Random(n, 3);
        var y = Check.Random(n, 4);
        using var gx = GpuBuffer.From<float>(Ctx, x);
        using var gy = GpuBuffer.From<float>(Ctx, y);
        using var seed = GpuBuffer.From<uint>(Ctx, [seedValue]);
        using var gout = new GpuBuffer(Ctx, 4L * n);
        using (var g = new CommandGraph(Ctx))
        {
            AddKernel.Forward(g, gx, gy, n, 1f, new DropoutMask<GpuBuffer>(0.1f, seed, stream), gout);
            g.Run();
        }
        var expected = x.ToArray();
        DropoutReference.Forward<float>(y, n, 0.1f, seedValue, stream);
        AddReference.Forward(expected, y);
        Assert.Equal(expected, gout.Download<float>());
        Assert.Equal(x, gx.Download<float>());
        // The mask is fixed by the seed: from 33 elements on it drops some, so the test sees both kinds.
        if (n >= 33) Assert.Contains(0f, y);
    }
}
