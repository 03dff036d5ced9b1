using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>VKPROMPT_ROW_LOCAL_SIZE (<see cref="GpuOptions.RowLocalSize"/>): the row kernels with a
/// workgroup of 64 invocations (128 where the default is 64 already: lavapipe's), which keeps a
/// 612-key attention row (T5's 512 tokens + 100 prompt) in registers at 10 (or 5) elements an
/// invocation, give the references' results; a size that is no multiple of the subgroup size (a
/// power of two on every device) is refused, naming the variable.</summary>
public sealed class RowLocalSizeTests
{
    [Fact]
    public void RowKernelsMatchTheReferencesAtAnotherWorkgroupSize()
    {
        int local;
        using (var defaults = GpuContext.Create(EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = null }))
            local = Rows.LocalSize(defaults) == 64 ? 128 : 64;
        using var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, RowLocalSize = local });
        Assert.Equal(local, Rows.LocalSize(ctx));
        var shape = new AttentionShape(1, 2, 3, 612, Causal: true);
        Assert.True(Rows.CachedPerInvocation(shape.KeyLength, local) > 0);
        SoftmaxMatchesReference(ctx, shape, $"{local} invocations a row");
        Assert.True(ctx.Validation.ErrorCount == 0, string.Join("\n", ctx.Validation.Errors));
    }

    /// <summary>The attention softmax and its backward on random scores and gradients of
    /// <paramref name="shape"/>, against their CPU references.</summary>
    internal static void SoftmaxMatchesReference(GpuContext ctx, AttentionShape shape, string what)
    {
        int n = (int)shape.Elements;
        var scores = Check.Random(n, 7);
        var grad = Check.Random(n, 8);
        using var gs = GpuBuffer.From<float>(ctx, scores);
        using var gg = GpuBuffer.From<float>(ctx, grad);
        using (var g = new CommandGraph(ctx))
        {
            AttentionSoftmaxKernel.Forward(g, gs, null, null, null, shape);
            SoftmaxBackwardKernel.Backward(g, gs, gg, (int)shape.Rows, shape.KeyLength);
            g.Run();
        }
        AttentionSoftmaxReference.Forward<float>(scores, [], [], [], shape);
        SoftmaxBackwardReference.Backward<float>(scores, grad, (int)shape.Rows, shape.KeyLength);
        Check.Close(scores, gs.Download<float>(), 1e-5, $"softmax, {what}");
        Check.Close(grad, gg.Download<float>(), 1e-5, $"softmax backward, {what}");
    }

    [Fact]
    public void ASizeThatSplitsASubgroupIsRefused()
    {
        // The plan decides it when the context is created, naming the option.
        var e = Assert.Throws<GpuException>(() => GpuContext.Create(EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = null, RowLocalSize = 3 }));
        Assert.Contains("GpuOptions.RowLocalSize=3", e.Message);
    }
}
