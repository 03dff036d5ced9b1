using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// The units' fragment shape the KHR kernels compose their 16x16x16 products of
/// (<see cref="MatrixFragment"/>, include/coopmat.glsl): which listed shape is chosen, what the
/// plan reports, and how the shape reaches the kernels (specialization constants at ids of their
/// own). The composed products themselves run where a driver lists a smaller shape only:
/// test.sh runs the matrix-unit tests again on Mesa 26.1's lavapipe, 8x8x8 (tools/fetch-lavapipe-khr.sh).
/// </summary>
public sealed class MatrixFragmentTests
{
    static MatrixFragment F(uint m, uint n, uint k) => new(m, n, k);

    public static TheoryData<MatrixFragment[], MatrixFragment?> Listed => new()
    {
        // NVIDIA lists 16x16x16 among others: one fragment a matrix.
        { [F(16, 8, 16), F(16, 16, 16), F(16, 8, 8)], MatrixFragment.Whole },
        // Mesa's lavapipe 26.1.
        { [F(8, 8, 8)], F(8, 8, 8) },
        // Otherwise the most products a fragment.
        { [F(8, 8, 16)], F(8, 8, 16) },
        { [F(8, 8, 8), F(8, 16, 16), F(8, 8, 16)], F(8, 16, 16) },
        // As many products: the larger accumulator (fewer of them a matrix).
        { [F(8, 16, 16), F(16, 16, 8)], F(16, 16, 8) },
        // Sides other than 8 and 16 do not compose into 16 in at most two parts.
        { [F(32, 8, 16), F(4, 4, 4), F(16, 16, 32)], null },
        { [], null },
    };

    [Theory]
    [MemberData(nameof(Listed))]
    public void ChoosesTheShapeToComposeOf(MatrixFragment[] listed, MatrixFragment? expected) =>
        Assert.Equal(expected, MatrixFragment.Choose(listed));

    [Fact]
    public void SaysWhatItComposes()
    {
        Assert.False(MatrixFragment.Whole.Composed);
        Assert.Equal("16x16x16", MatrixFragment.Whole.ToString());
        Assert.True(F(8, 8, 16).Composed);
        Assert.Equal("16x16x16 of 8x8x16", F(8, 8, 16).ToString());
    }

    static DeviceCapabilities Device(MatrixFragment fragment) =>
        DevicePlanTests.H100 with { CooperativeMatrixFragment = fragment, CooperativeMatrixBf16 = false, CooperativeMatrix2Nv = false };

    [Theory]
    [InlineData(MatrixUnitsRequest.Auto, "8x8x16")]
    [InlineData(MatrixUnitsRequest.Khr, "8x8x16")]
    // The emulation multiplies 16x16x16 whatever the device lists.
    [InlineData(MatrixUnitsRequest.Emulate, "16x16x16")]
    [InlineData(MatrixUnitsRequest.Off, null)]
    public void ThePlanComposesOfTheDevicesShapeOnItsUnitsOnly(MatrixUnitsRequest request, string? expected)
    {
        var plan = new DevicePlan(Device(F(8, 8, 16)), new GpuOptions { MatrixUnits = request }, khrBuilt: true, nv2Built: false);
        Assert.Equal(expected, (string?)plan.ToJson()["matrixUnitsFragment"]);
        Assert.Equal(request is MatrixUnitsRequest.Auto or MatrixUnitsRequest.Khr ? F(8, 8, 16) : MatrixFragment.Whole, plan.MatrixUnitsFragment);
    }

    /// <summary>The ids the plan hands the shape at are CM_M, CM_N and CM_K's in the shader.</summary>
    [Fact]
    public void TheIdsAreTheShadersConstants()
    {
        string glsl = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "shaders", "include", "coopmat.glsl"));
        string[] names = ["CM_M", "CM_N", "CM_K"];
        for (int i = 0; i < names.Length; i++)
            Assert.Contains($"layout(constant_id = {MatrixFragment.SpecializationIds[i]}) const uint {names[i]} = 16;", glsl);
    }

    /// <summary>Every matrix-unit kernel gets the plan's shape at CM_M, CM_N and CM_K's ids,
    /// which kernels without them (the emulation here) ignore, as Vulkan specifies; the add
    /// kernel so built computes as before, under validation. A placed id among the positional
    /// ones is refused.</summary>
    [Fact]
    public void TheShapeReachesTheKernelsAtItsOwnIds()
    {
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null });
        var f = ctx.Plan.MatrixUnitsFragment;
        var k = ctx.MatrixUnitsKernel("add", AddKernel.Layout, Grid.LinearSize);
        Assert.Equal([Grid.LinearSize], k.Specialization);
        Assert.Equal([(20u, (int)f.M), (21u, (int)f.N), (22u, (int)f.K)], k.Placed);
        Assert.Same(k, ctx.MatrixUnitsKernel("add", AddKernel.Layout, Grid.LinearSize));
        var e = Assert.Throws<ArgumentException>(() => ctx.PinnedKernel("add", AddKernel.Layout, 0, [Grid.LinearSize, 1], [(1u, 16)]));
        Assert.Contains("positional", e.Message);

        SubgroupPinTests.AddsAsTheReference(ctx, "add with placed constants", (k, 2f));
    }
}
