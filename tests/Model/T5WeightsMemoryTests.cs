using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>What the frozen weights cost in device memory per precision: counted from the
/// tensors T5Weights makes (<see cref="T5Weights.Bytes"/>, no weights loaded) at t5-base's
/// shape, and held to what the memory pool measures when a real checkpoint is loaded.</summary>
public sealed class T5WeightsMemoryTests(GpuFixture f) : GpuTest(f)
{
    /// <summary>int8 is a byte a weight and a 4-byte scale a row (0.5% more at t5-base's
    /// 768-wide rows); norms and position biases stay fp32. So a quarter of fp32, a hair above.</summary>
    [Fact]
    public void Int8WeightsOfT5BaseTakeAQuarterOfFp32()
    {
        var config = T5Config.Named("t5-base");
        long fp32 = T5Weights.Bytes(config, WeightPrecision.Fp32);
        long bf16 = T5Weights.Bytes(config, WeightPrecision.Bf16);
        long int8 = T5Weights.Bytes(config, WeightPrecision.Int8);
        // fp32 is every parameter at 4 bytes: the count T5Names lists.
        Assert.Equal(T5Names.All(config).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)) * 4, fp32);
        double ratio = (double)int8 / fp32;
        Assert.True(ratio is >= 0.25 and <= 0.252, $"t5-base int8 weights {int8 >> 20} MiB, fp32 {fp32 >> 20} MiB: ratio {ratio:F4}");
        Assert.InRange((double)bf16 / fp32, 0.5, 0.501);
    }

    /// <summary>The count is what the device allocates: loading tiny-v11 as int8 or fp32 takes the memory the count says, but for each buffer's alignment (at most 256 bytes,
    /// two buffers per int8 table).</summary>
    [Theory, InlineData(WeightPrecision.Int8), InlineData(WeightPrecision.Fp32)]
    public void TheCountIsWhatTheGpuBackendAllocates(WeightPrecision precision)
    {
        using var ckpt = T5Checkpoint.Open(Path.Combine(TestPaths.Golden, "tiny-v11"));
        using var be = new GpuBackend(Ctx);
        long before = Ctx.Memory.BytesInUse;
        long measured;
        using (new T5Weights(ckpt, be, precision))
            measured = Ctx.Memory.BytesInUse - before;
        long counted = T5Weights.Bytes(ckpt.Config, precision);
        long slack = 2L * T5Names.All(ckpt.Config).Count * 256;
        Assert.True(measured >= counted && measured - counted <= slack, $"{precision}: the pool holds {measured} bytes, the count says {counted} (slack {slack})");
    }
}
