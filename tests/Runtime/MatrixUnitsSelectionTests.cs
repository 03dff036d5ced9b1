using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>GpuContext.ChooseMatrixUnits: which build of the cooperative-matrix kernel
/// VKPROMPT_COOPMAT selects for a device and a build.</summary>
public sealed class MatrixUnitsSelectionTests
{
    static DeviceCapabilities Device(bool khr, bool nv, bool fp16 = true) => new()
    {
        Index = 0, Name = "test GPU", Vendor = "test", VendorId = 0, DeviceType = "discrete",
        DriverName = "test", DriverInfo = "", DriverVersion = "1.0.0", ApiVersion = "1.3.0",
        SubgroupSize = 32, ShaderFloat16 = fp16, StorageBuffer16Bit = fp16, ShaderInt8 = false,
        BFloat16 = false, CooperativeMatrixKhr = khr, CooperativeMatrixNv = nv, CooperativeMatrixShapes = [], MaxStorageBufferRange = 1 << 27,
        MaxMemoryAllocationSize = 1 << 30, MaxComputeSharedMemorySize = 49152, MaxComputeWorkGroupInvocations = 1024, MaxPushConstantsSize = 128,
        MaxWorkGroupCountX = 65535, MaxWorkGroupCountY = 65535, MaxWorkGroupCountZ = 65535,
        TimestampsSupported = true, TimestampPeriodNs = 1, Heaps = [], PipelineCacheKey = "key",
    };

    static GpuOptions Asking(MatrixUnitsExtension extension) => new() { CooperativeMatrix = true, CooperativeMatrixEmulation = false, CooperativeMatrixExtension = extension };

    [Theory]
    // Asked for either: KHR where the device has it and the build compiled it, else NV, else none.
    [InlineData(true, true, true, MatrixUnits.Khr)]
    [InlineData(true, true, false, MatrixUnits.Nv)]
    [InlineData(false, true, true, MatrixUnits.Nv)]
    [InlineData(true, false, true, MatrixUnits.Khr)]
    [InlineData(true, false, false, MatrixUnits.None)]
    [InlineData(false, false, true, MatrixUnits.None)]
    public void AutoPrefersKhrThenNv(bool khr, bool nv, bool khrBuilt, MatrixUnits expected) =>
        Assert.Equal(expected, GpuContext.ChooseMatrixUnits(Device(khr, nv), Asking(MatrixUnitsExtension.Auto), khrBuilt));

    [Fact]
    public void OffUnlessAskedFor() =>
        Assert.Equal(MatrixUnits.None, GpuContext.ChooseMatrixUnits(Device(true, true), new GpuOptions { CooperativeMatrix = false, CooperativeMatrixEmulation = false }, true));

    [Fact]
    public void EmulationWinsOverTheDevicesUnits() =>
        Assert.Equal(MatrixUnits.Emulated, GpuContext.ChooseMatrixUnits(Device(true, true), new GpuOptions { CooperativeMatrix = true, CooperativeMatrixEmulation = true }, true));

    [Fact]
    public void EmulationNeedsHalfArithmetic()
    {
        var e = Assert.Throws<GpuException>(() => GpuContext.ChooseMatrixUnits(Device(false, false, fp16: false), new GpuOptions { CooperativeMatrixEmulation = true }, true));
        Assert.Contains("shaderFloat16", e.Message);
    }

    [Fact]
    public void InsistingOnOneUsesItBesideTheOther()
    {
        Assert.Equal(MatrixUnits.Nv, GpuContext.ChooseMatrixUnits(Device(true, true), Asking(MatrixUnitsExtension.Nv), true));
        Assert.Equal(MatrixUnits.Khr, GpuContext.ChooseMatrixUnits(Device(true, true), Asking(MatrixUnitsExtension.Khr), true));
    }

    [Fact]
    public void InsistingOnKhrWithoutItsShaderNamesTheCompilerFix()
    {
        var e = Assert.Throws<GpuException>(() => GpuContext.ChooseMatrixUnits(Device(true, true), Asking(MatrixUnitsExtension.Khr), false));
        Assert.Contains("tools/fetch-glslc.sh", e.Message);
    }

    [Theory]
    [InlineData(MatrixUnitsExtension.Khr, "VK_KHR_cooperative_matrix")]
    [InlineData(MatrixUnitsExtension.Nv, "VK_NV_cooperative_matrix")]
    public void InsistingOnOneTheDeviceLacksSaysWhich(MatrixUnitsExtension extension, string named)
    {
        var e = Assert.Throws<GpuException>(() => GpuContext.ChooseMatrixUnits(Device(false, false), Asking(extension), true));
        Assert.Contains(named, e.Message);
        Assert.Contains("test GPU", e.Message);
    }
}
