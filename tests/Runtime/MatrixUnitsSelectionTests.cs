using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>DevicePlan.MatrixUnits: which build of the matrix-unit kernel
/// <see cref="GpuOptions.MatrixUnits"/> selects for a device and a build.</summary>
public sealed class MatrixUnitsSelectionTests
{
    static DeviceCapabilities Device(bool khr, bool nv, bool fp16 = true, bool nv2 = false) => new()
    {
        Index = 0, Name = "test GPU", Vendor = "test", VendorId = 0, DeviceType = "discrete",
        DriverName = "test", DriverInfo = "", DriverVersion = "1.0.0", ApiVersion = "1.3.0",
        SubgroupSize = 32, ShaderFloat16 = fp16, StorageBuffer16Bit = fp16, ShaderInt8 = false,
        BFloat16 = false, CooperativeMatrixKhr = khr, CooperativeMatrixNv = nv, CooperativeMatrixShapes = [], MaxStorageBufferRange = 1 << 27,
        MaxMemoryAllocationSize = 1 << 30, MaxComputeSharedMemorySize = 49152, MaxComputeWorkGroupInvocations = 1024, MaxPushConstantsSize = 128,
        MaxWorkGroupCountX = 65535, MaxWorkGroupCountY = 65535, MaxWorkGroupCountZ = 65535,
        TimestampsSupported = true, TimestampPeriodNs = 1, Heaps = [], PipelineCacheKey = "key",
        // What NVIDIA's drivers list for ggml-vulkan's workgroup-scope products.
        CooperativeMatrix2Nv = nv2, CooperativeMatrix2Shapes = nv2 ? [new(128, 32, 16, 16), new(256, 32, 32, 16)] : [], CooperativeMatrix2MaxDimension = nv2 ? 1024u : 0,
    };

    static GpuOptions Asking(MatrixUnitsRequest request) => new() { MatrixUnits = request };

    static MatrixUnits Choose(DeviceCapabilities caps, GpuOptions options, bool khrBuilt, bool nv2Built = false) =>
        new DevicePlan(caps, options, khrBuilt, nv2Built).MatrixUnits;

    [Theory]
    // Asked for either: KHR where the device has it and the build compiled it, else NV, else none.
    [InlineData(true, true, true, MatrixUnits.Khr)]
    [InlineData(true, true, false, MatrixUnits.Nv)]
    [InlineData(false, true, true, MatrixUnits.Nv)]
    [InlineData(true, false, true, MatrixUnits.Khr)]
    [InlineData(true, false, false, MatrixUnits.None)]
    [InlineData(false, false, true, MatrixUnits.None)]
    public void AutoPrefersKhrThenNv(bool khr, bool nv, bool khrBuilt, MatrixUnits expected) =>
        Assert.Equal(expected, Choose(Device(khr, nv), Asking(MatrixUnitsRequest.Auto), khrBuilt));

    [Fact]
    public void OffUnlessAskedFor() =>
        Assert.Equal(MatrixUnits.None, Choose(Device(true, true), Asking(MatrixUnitsRequest.Off), true));

    [Fact]
    public void EmulationWinsOverTheDevicesUnits() =>
        Assert.Equal(MatrixUnits.Emulated, Choose(Device(true, true), Asking(MatrixUnitsRequest.Emulate), true));

    [Fact]
    public void EmulationNeedsHalfArithmetic()
    {
        var e = Assert.Throws<GpuException>(() => Choose(Device(false, false, fp16: false), Asking(MatrixUnitsRequest.Emulate), true));
        Assert.Contains("shaderFloat16", e.Message);
    }

    [Fact]
    public void InsistingOnOneUsesItBesideTheOther()
    {
        Assert.Equal(MatrixUnits.Nv, Choose(Device(true, true), Asking(MatrixUnitsRequest.Nv), true));
        Assert.Equal(MatrixUnits.Khr, Choose(Device(true, true), Asking(MatrixUnitsRequest.Khr), true));
    }

    [Fact]
    public void InsistingOnKhrWithoutItsShaderNamesTheCompilerFix()
    {
        var e = Assert.Throws<GpuException>(() => Choose(Device(true, true), Asking(MatrixUnitsRequest.Khr), false));
        Assert.Contains("tools/fetch-glslc.sh", e.Message);
    }

    [Theory]
    [InlineData(MatrixUnitsRequest.Khr, "VK_KHR_cooperative_matrix")]
    [InlineData(MatrixUnitsRequest.Nv, "VK_NV_cooperative_matrix")]
    public void InsistingOnOneTheDeviceLacksSaysWhich(MatrixUnitsRequest extension, string named)
    {
        var e = Assert.Throws<GpuException>(() => Choose(Device(false, false), Asking(extension), true));
        Assert.Contains(named, e.Message);
        Assert.Contains("test GPU", e.Message);
    }

    /// <summary>VK_NV_cooperative_matrix2's workgroup-scope kernel runs only where asked for
    /// (<see cref="MatrixUnitsRequest.Nv2"/>), the device has it and the build compiled both its kernel and the KHR
    /// one it falls back to; otherwise the error says which is missing.</summary>
    [Fact]
    public void WorkgroupScopeOnlyWhereAskedForAndPresent()
    {
        Assert.Equal(MatrixUnits.Nv2, Choose(Device(true, true, nv2: true), Asking(MatrixUnitsRequest.Nv2), true, nv2Built: true));
        Assert.Equal(MatrixUnits.Khr, Choose(Device(true, true, nv2: true), Asking(MatrixUnitsRequest.Auto), true, nv2Built: true));
        var missing = Assert.Throws<GpuException>(() => Choose(Device(true, true), Asking(MatrixUnitsRequest.Nv2), true, nv2Built: true));
        Assert.Contains("VK_NV_cooperative_matrix2", missing.Message);
        Assert.Contains("test GPU", missing.Message);
        var unbuilt = Assert.Throws<GpuException>(() => Choose(Device(true, true, nv2: true), Asking(MatrixUnitsRequest.Nv2), true, nv2Built: false));
        Assert.Contains("tools/fetch-glslc.sh", unbuilt.Message);
    }

    /// <summary>A workgroup-scope tiling fits where the driver lists its workgroup size with
    /// granularities dividing its block and depth, and no dimension passes the largest.</summary>
    [Fact]
    public void WorkgroupScopeTilingsFollowTheDriversGranularities()
    {
        var caps = Device(true, true, nv2: true);
        Assert.True(MatrixUnitsTiling.WorkgroupLarge.FitsWorkgroupScope(caps));   // 128x256x64, 256 invocations
        Assert.True(MatrixUnitsTiling.WorkgroupSmall.FitsWorkgroupScope(caps));   // 64x64x64, 128 invocations
        Assert.True(new MatrixUnitsTiling(2, 2, 1, 1, 16).FitsWorkgroupScope(caps));   // 32x32x16, 128 invocations: the least they allow
        Assert.False(new MatrixUnitsTiling(1, 8, 1, 1, 64).FitsWorkgroupScope(caps));  // 16 rows: not a multiple of 32
        Assert.False(new MatrixUnitsTiling(2, 2, 2, 2, 8).FitsWorkgroupScope(caps));   // 8 deep: not a multiple of 16
        Assert.False(new MatrixUnitsTiling(4, 4, 1, 1, 16).FitsWorkgroupScope(caps)); // 512 invocations: not listed
        Assert.False((MatrixUnitsTiling.WorkgroupLarge with { TilesN = 20 }).FitsWorkgroupScope(caps)); // 1280 columns: past 1024
        Assert.False(MatrixUnitsTiling.WorkgroupLarge.FitsWorkgroupScope(Device(true, true)));
    }

    /// <summary>Which products the workgroup-scope kernel takes: on an nv2 context those with fp16
    /// or fp32 B whose operands each have a unit stride (T5's X·Wᵀ and dY·W, attention's per-head
    /// views); bf16 weights kept bf16, operands strided both ways and products with a 16-bit A,
    /// activation B or C (read straight, never copied, by the KHR kernel) go to the KHR kernel, and
    /// so do products with an epilogue (the residual's dropout needs each element's index), with
    /// the KHR kernel's tiling and copies.</summary>
    [Fact]
    public void WorkgroupScopeTakesProductsItCanAddress()
    {
        var forward = MatMulSpec.Rows(19584, 1024, 1024, transposeB: true);
        var backward = MatMulSpec.Rows(19584, 1024, 2816);
        var nv2 = new DevicePlan(Device(true, true, nv2: true), Asking(MatrixUnitsRequest.Nv2), khrBuilt: true, nv2Built: true);
        var khr = new DevicePlan(Device(true, true, nv2: true), Asking(MatrixUnitsRequest.Khr), khrBuilt: true, nv2Built: true);
        Assert.True(nv2.OnWorkgroupScope(forward, WeightPrecision.Fp16));
        Assert.True(nv2.OnWorkgroupScope(backward, WeightPrecision.Fp16));
        Assert.True(nv2.OnWorkgroupScope(MatMulSpec.AttentionPtV(32, 16, 612, 612, 64), WeightPrecision.Fp32));
        Assert.False(nv2.OnWorkgroupScope(forward, WeightPrecision.Bf16));
        Assert.False(khr.OnWorkgroupScope(forward, WeightPrecision.Fp16));
        Assert.False(nv2.OnWorkgroupScope(forward with { AStrideK = 2, AStrideM = 2048 }, WeightPrecision.Fp16));
        var residual = forward with { Epilogue = MatMulEpilogue.Residual };
        Assert.False(nv2.OnWorkgroupScope(residual, WeightPrecision.Fp16));
        Assert.False(nv2.Product(residual, WeightPrecision.Fp16).WorkgroupScope);
        Assert.Equal(khr.Product(forward, WeightPrecision.Fp16).MatrixUnits, nv2.Product(residual, WeightPrecision.Fp16).MatrixUnits);
        foreach (var sixteen in new[] { ActivationPrecision.Bf16, ActivationPrecision.Fp16 })
        {
            Assert.False(nv2.OnWorkgroupScope(forward with { AStorage = sixteen }, WeightPrecision.Fp16));
            Assert.False(nv2.OnWorkgroupScope(forward with { CStorage = sixteen }, WeightPrecision.Fp16));
            Assert.False(nv2.OnWorkgroupScope(MatMulSpec.AttentionPtV(32, 16, 612, 612, 64) with { BStorage = sixteen }, WeightPrecision.Fp32));
            Assert.Equal((false, false), MatMulKernel.CopiedOperands(nv2, MatMulSpec.AttentionPtV(32, 16, 612, 612, 64) with { AStorage = sixteen, BStorage = sixteen }, WeightPrecision.Fp32));
        }
    }

    /// <summary>The workgroup-scope tiling follows the product: 128x256 blocks for wide products,
    /// 128x128 up to 128 columns, 128x64 up to 64, 64x64 where 128x256 blocks would be fewer than
    /// 128 (the decoder's 256 rows); where the driver's granularities rule one out, the first
    /// candidate that fits.</summary>
    [Fact]
    public void WorkgroupScopeTilingFollowsTheProduct()
    {
        var caps = Device(true, true, nv2: true);
        Assert.Equal(MatrixUnitsTiling.WorkgroupLarge, MatrixUnitsTiling.ForWorkgroupScope(caps, MatMulSpec.Rows(19584, 2816, 1024, transposeB: true)));
        Assert.Equal(MatrixUnitsTiling.WorkgroupMedium, MatrixUnitsTiling.ForWorkgroupScope(caps, MatMulSpec.Rows(19584, 128, 1024, transposeB: true)));
        Assert.Equal(MatrixUnitsTiling.WorkgroupNarrow, MatrixUnitsTiling.ForWorkgroupScope(caps, MatMulSpec.AttentionPtV(32, 16, 612, 612, 64)));
        Assert.Equal(MatrixUnitsTiling.WorkgroupSmall, MatrixUnitsTiling.ForWorkgroupScope(caps, MatMulSpec.Rows(256, 1024, 1024, transposeB: true)));
        // A driver that lists only 256 invocations: the small blocks' 128 do not fit.
        var only256 = caps with { CooperativeMatrix2Shapes = [new(256, 32, 32, 16)] };
        Assert.Equal(MatrixUnitsTiling.WorkgroupLarge, MatrixUnitsTiling.ForWorkgroupScope(only256, MatMulSpec.Rows(256, 1024, 1024, transposeB: true)));
    }
}
