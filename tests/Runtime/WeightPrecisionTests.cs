using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

public sealed class WeightPrecisionTests(GpuFixture f) : GpuTest(f)
{
    DeviceCapabilities Without16BitStorage => Ctx.Capabilities with { StorageBuffer16Bit = false, Name = "Plain GPU" };

    [Fact]
    public void NamedPrecisionsParseWhateverTheDevice()
    {
        foreach (var caps in new[] { Ctx.Capabilities, Without16BitStorage, null })
        {
            Assert.Equal(WeightPrecision.Fp32, WeightPrecisions.Parse("fp32", caps));
            Assert.Equal(WeightPrecision.Fp16, WeightPrecisions.Parse("FP16", caps));
            Assert.Equal(WeightPrecision.Bf16, WeightPrecisions.Parse("bf16", caps));
            Assert.Equal(WeightPrecision.Int8, WeightPrecisions.Parse("Int8", caps));
        }
        var e = Assert.Throws<ArgumentException>(() => WeightPrecisions.Parse("fp8", null));
        Assert.Contains("fp32, fp16, bf16, int8, auto", e.Message);
    }

    [Fact]
    public void AutoFallsBackToFp32OnlyWithout16BitStorage()
    {
        Assert.Equal(Ctx.Capabilities.StorageBuffer16Bit ? WeightPrecision.Bf16 : WeightPrecision.Fp32, WeightPrecisions.Parse("auto", Ctx.Capabilities));
        Assert.Equal(WeightPrecision.Fp32, WeightPrecisions.Parse("auto", Without16BitStorage));
        // The CPU backend would only emulate the rounding, slower and less exact.
        Assert.Equal(WeightPrecision.Fp32, WeightPrecisions.Parse("auto", null));
    }

    [Fact]
    public void AnExplicitHalfPrecisionFailsClearlyWithout16BitStorage()
    {
        WeightPrecision.Fp32.Require(Without16BitStorage);
        foreach (var p in new[] { WeightPrecision.Fp16, WeightPrecision.Bf16 })
        {
            var e = Assert.Throws<GpuException>(() => p.Require(Without16BitStorage));
            Assert.Contains($"{p.Name()} weights need 16-bit storage buffers (storageBuffer16BitAccess)", e.Message);
            Assert.Contains("Plain GPU", e.Message);
            Assert.Contains("fp32", e.Message);
        }
    }

    /// <summary>int8 needs no device feature (its bytes are read as 32-bit words), so a device
    /// without 16-bit storage takes it.</summary>
    [Fact]
    public void Int8NeedsNoStorageFeature()
    {
        Assert.True(WeightPrecision.Int8.IsSupported(Without16BitStorage));
        WeightPrecision.Int8.Require(Without16BitStorage);
        Assert.Equal("int8", WeightPrecision.Int8.Name());
        Assert.Contains("int8", WeightPrecisions.Names);
    }

    /// <summary>int8 in the memory pool: one byte a weight and four a row for its scale, a
    /// quarter of fp32 and a sixteenth more (sizes multiples of 256 bytes, as below).</summary>
    [Fact]
    public void TheGpuBackendStoresInt8TablesInAQuarterOfTheMemory()
    {
        using var be = new GpuBackend(Ctx);
        long before = Ctx.Memory.BytesInUse;
        using (var t = be.Table(128, 64, "int8", WeightPrecision.Int8))
            Assert.Equal(128 * 64 + 128 * 4, Ctx.Memory.BytesInUse - before);
    }

    /// <summary>The saving shows in the memory pool: two bytes a weight instead of four (sizes
    /// are multiples of 256 bytes, so no driver's alignment pads them).</summary>
    [SkippableFact]
    public void TheGpuBackendStoresHalfTablesInHalfTheMemory()
    {
        // Without 16-bit storage Table refuses, which the test above covers through Require.
        Skip.IfNot(Ctx.Capabilities.StorageBuffer16Bit, $"{Ctx.Capabilities.Name} has no 16-bit storage buffers");
        using var be = new GpuBackend(Ctx);
        long before = Ctx.Memory.BytesInUse;
        using (var t = be.Table(100, 64, "fp32"))
            Assert.Equal(100 * 64 * 4, Ctx.Memory.BytesInUse - before);
        foreach (var p in new[] { WeightPrecision.Fp16, WeightPrecision.Bf16 })
            using (var t = be.Table(100, 64, p.Name(), p))
                Assert.Equal(100 * 64 * 2, Ctx.Memory.BytesInUse - before);
    }
}
