using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>GpuContext.Choose: how --device / VKPROMPT_DEVICE picks among the devices present.</summary>
public sealed class DeviceSelectionTests
{
    static DeviceCapabilities Device(int index, string name, string type) => new()
    {
        Index = index, Name = name, Vendor = "test", VendorId = 0, DeviceType = type,
        DriverName = "test", DriverInfo = "", DriverVersion = "1.0.0", ApiVersion = "1.3.0",
        SubgroupSize = 32, ShaderFloat16 = false, StorageBuffer16Bit = false, ShaderInt8 = false,
        BFloat16 = false, CooperativeMatrixKhr = false, CooperativeMatrixNv = false, CooperativeMatrixShapes = [], MaxStorageBufferRange = 1 << 27,
        MaxMemoryAllocationSize = 1 << 30, MaxComputeSharedMemorySize = 32768, MaxComputeWorkGroupInvocations = 1024, MaxPushConstantsSize = 128,
        MaxWorkGroupCountX = 65535, MaxWorkGroupCountY = 65535, MaxWorkGroupCountZ = 65535,
        TimestampsSupported = true, TimestampPeriodNs = 1, Heaps = [], PipelineCacheKey = $"key{index}",
    };

    static IReadOnlyList<DeviceCapabilities> Devices(params string[] types) =>
        types.Select((t, i) => Device(i, $"{t} device {i}", t)).ToList();

    [Theory]
    [InlineData(3, "cpu", "virtual", "integrated", "discrete")]
    [InlineData(2, "cpu", "virtual", "integrated")]
    [InlineData(1, "cpu", "virtual")]
    [InlineData(0, "cpu")]
    [InlineData(1, "other", "cpu")]
    [InlineData(0, "discrete", "discrete")]
    public void AutoPrefersDiscreteThenIntegratedThenVirtualThenCpu(int expected, params string[] types)
    {
        var devices = Devices(types);
        Assert.Equal(expected, DeviceBringUp.Choose(devices, "auto"));
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("AUTO")]
    public void BlankAndAnyCaseOfAutoMeanAuto(string spec) =>
        Assert.Equal(1, DeviceBringUp.Choose(Devices("cpu", "discrete"), spec));

    /// <summary>auto:N, an MPI rank's local index: the ranks on one machine spread over the devices
    /// of auto's kind (here the two discrete GPUs, never the CPU device), wrapping past their count.</summary>
    [Theory]
    [InlineData("auto:0", 1)]
    [InlineData("auto:1", 3)]
    [InlineData("AUTO:2", 1)]
    [InlineData("auto:5", 3)]
    public void AutoWithALocalIndexCyclesOverTheDevicesAutoPrefers(string spec, int expected) =>
        Assert.Equal(expected, DeviceBringUp.Choose(Devices("cpu", "discrete", "integrated", "discrete"), spec));

    [Fact]
    public void AutoWithALocalIndexOnOneCpuDeviceSharesIt() =>
        Assert.Equal(0, DeviceBringUp.Choose(Devices("cpu"), "auto:1"));

    [Fact]
    public void IndexSelectsThatDevice() =>
        Assert.Equal(0, DeviceBringUp.Choose(Devices("cpu", "discrete"), "0"));

    [Theory]
    [InlineData("2")]
    [InlineData("-1")]
    public void IndexOutOfRangeListsTheDevices(string spec)
    {
        var e = Assert.Throws<GpuException>(() => DeviceBringUp.Choose(Devices("cpu", "discrete"), spec));
        Assert.Contains($"device {spec} does not exist", e.Message, StringComparison.Ordinal);
        Assert.Contains("0: cpu device 0", e.Message, StringComparison.Ordinal);
        Assert.Contains("1: discrete device 1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NameSubstringMatchesIgnoringCase()
    {
        var devices = new[] { Device(0, "llvmpipe (LLVM 15.0.6, 256 bits)", "cpu"), Device(1, "NVIDIA GeForce RTX 4090", "discrete") };
        Assert.Equal(1, DeviceBringUp.Choose(devices, "rtx"));
        Assert.Equal(0, DeviceBringUp.Choose(devices, "LLVMpipe"));
    }

    [Fact]
    public void UnknownNameListsTheDevices()
    {
        var e = Assert.Throws<GpuException>(() => DeviceBringUp.Choose(Devices("cpu", "integrated"), "radeon"));
        Assert.Contains("'radeon'", e.Message, StringComparison.Ordinal);
        Assert.Contains("0: cpu device 0", e.Message, StringComparison.Ordinal);
        Assert.Contains("1: integrated device 1", e.Message, StringComparison.Ordinal);
    }
}
