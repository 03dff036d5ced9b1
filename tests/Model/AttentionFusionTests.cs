using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>When T5Pass fuses attention, and what fusing saves.</summary>
public sealed class AttentionFusionTests(GpuFixture f) : GpuTest(f), IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("vkprompt-fusion").FullName;

    public override void Dispose()
    {
        Directory.Delete(dir, true);
        base.Dispose();
    }

    [Fact]
    public void AutoFusesLargeAttentionOnGpusOnly()
    {
        using var cpu = new CpuBackend { AttentionFusion = AttentionFusion.Auto };
        Assert.False(cpu.FusesAttention(Scores(512, 512)));
        using var gpu = new GpuBackend(Ctx) { AttentionFusion = AttentionFusion.Auto };
        Assert.Equal(Ctx.Capabilities.DeviceType != "cpu", gpu.FusesAttention(Scores(1024, 1024)));
        Assert.False(gpu.FusesAttention(Scores(612, 612)));
        Assert.False(gpu.FusesAttention(Scores(8, 500)));
        gpu.AttentionFusion = AttentionFusion.Fused;
        Assert.True(gpu.FusesAttention(Scores(1, 1)));
        cpu.AttentionFusion = AttentionFusion.Unfused;
        Assert.False(cpu.FusesAttention(Scores(512, 512)));
    }

    static AttentionShape Scores(int queryLength, int keyLength, int batch = 2) => new(batch, 4, queryLength, keyLength);

    /// <summary>Auto fuses on any device, lavapipe included, where the unfused scores would not
    /// fit the largest buffer a kernel can bind: unfused could not run at all.</summary>
    [Fact]
    public void AutoFusesScoresTooLargeToBind()
    {
        using var gpu = new GpuBackend(Ctx) { AttentionFusion = AttentionFusion.Auto };
        long limit = Ctx.MaxBindingBytes / sizeof(float);
        // One query row more than the binding holds, at 4 heads x 2 batch x 512 keys.
        int rows = (int)(limit / (2 * 4 * 512)) + 1;
        Assert.True(gpu.FusesAttention(Scores(rows, 512)));
        Assert.Equal(Ctx.Capabilities.DeviceType != "cpu" && (long)(rows - 1) * 512 >= 1024 * 1024, gpu.FusesAttention(Scores(rows - 1, 512)));
        gpu.AttentionFusion = AttentionFusion.Unfused;
        Assert.False(gpu.FusesAttention(Scores(rows, 512)));
    }

    /// <summary>A training pass that stores its activations keeps, per encoder block, a
    /// logsumexp per query instead of the [B, H, Le, Le] probabilities, and needs no buffer for
    /// their gradient: at least (layers + 1)·B·H·Le² floats fewer.</summary>
    [Fact]
    public void FusedStoredPassHoldsNoProbabilities()
    {
        var config = T5Config.Named("t5-small") with { VocabSize = 64, DModel = 24, DKv = 5, NumHeads = 3, DFf = 40, NumLayers = 2, NumDecoderLayers = 2 };
        RandomT5.Write(dir, config, seed: 1);
        using var ckpt = T5Checkpoint.Open(dir);
        using var cpu = new CpuBackend();
        using var weights = new T5Weights(ckpt, cpu);
        using var prompt = cpu.Floats(8 * config.DModel, "prompt");
        var shape = new BatchShape(Batch: 4, InputLength: 120, TargetLength: 16, PromptLength: 8);

        long PassBytes(AttentionFusion fusion)
        {
            cpu.AttentionFusion = fusion;
            long before = cpu.MemoryUse.Current;
            using var pass = new T5Pass(weights, shape, ActivationMode.Store, prompt);
            return cpu.MemoryUse.Current - before;
        }

        long unfused = PassBytes(AttentionFusion.Unfused), fused = PassBytes(AttentionFusion.Fused);
        long le = shape.EncoderLength;
        Assert.True(unfused - fused >= (config.NumLayers + 1) * shape.Batch * config.NumHeads * le * le * 4L,
                    $"fused pass {fused} bytes vs unfused {unfused}");
    }
}
