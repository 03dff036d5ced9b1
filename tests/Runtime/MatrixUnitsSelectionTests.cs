using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>GpuContext.ChooseMatrixUnits: which build of the cooperative-matrix kernel
/// VKPROMPT_COOPMAT selects for a device and a build.</summary>
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

    /// <summary>VK_NV_cooperative_matrix2's workgroup-scope kernel runs only where asked for
    /// (VKPROMPT_COOPMAT=nv2), the device has it and the build compiled both its kernel and the KHR
    /// one it falls back to; otherwise the error says which is missing.</summary>
    [Fact]
    public void WorkgroupScopeOnlyWhereAskedForAndPresent()
    {
        Assert.Equal(MatrixUnits.Nv2, GpuContext.ChooseMatrixUnits(Device(true, true, nv2: true), Asking(MatrixUnitsExtension.Nv2), true, nv2Built: true));
        Assert.Equal(MatrixUnits.Khr, GpuContext.ChooseMatrixUnits(Device(true, true, nv2: true), Asking(MatrixUnitsExtension.Auto), true, nv2Built: true));
        var missing = Assert.Throws<GpuException>(() => GpuContext.ChooseMatrixUnits(Device(true, true), Asking(MatrixUnitsExtension.Nv2), true, nv2Built: true));
        Assert.Contains("VK_NV_cooperative_matrix2", missing.Message);
        Assert.Contains("test GPU", missing.Message);
        var unbuilt = Assert.Throws<GpuException>(() => GpuContext.ChooseMatrixUnits(Device(true, true, nv2: true), Asking(MatrixUnitsExtension.Nv2), true, nv2Built: false));
        Assert.Contains("tools/fetch-glslc.sh", unbuilt.Message);
    }

    /// <summary>A workgroup-scope tiling fits where the driver lists its workgroup size with
    /// granularities dividing its block and depth, and no dimension passes the largest.</summary>
    [Fact]
    public void WorkgroupScopeTilingsFollowTheDriversGranularities()
    {
        var caps = Device(true, true, nv2: true);
        Assert.True(CoopMatTiling.WorkgroupLarge.FitsWorkgroupScope(caps));   // 128x256x64, 256 invocations
        Assert.True(CoopMatTiling.WorkgroupSmall.FitsWorkgroupScope(caps));   // 64x64x64, 128 invocations
        Assert.True(new CoopMatTiling(2, 2, 1, 1, 16).FitsWorkgroupScope(caps));   // 32x32x16, 128 invocations: the least they allow
        Assert.False(new CoopMatTiling(1, 8, 1, 1, 64).FitsWorkgroupScope(caps));  // 16 rows: not a multiple of 32
        Assert.False(new CoopMatTiling(2, 2, 2, 2, 8).FitsWorkgroupScope(caps));   // 8 deep: not a multiple of 16
        Assert.False(new CoopMatTiling(4, 4, 1, 1, 16).FitsWorkgroupScope(caps)); // 512 invocations: not listed
        Assert.False((CoopMatTiling.WorkgroupLarge with { TilesN = 20 }).FitsWorkgroupScope(caps)); // 1280 columns: past 1024
        Assert.False(CoopMatTiling.WorkgroupLarge.FitsWorkgroupScope(Device(true, true)));
    }

    /// <summary>Which products the workgroup-scope kernel takes: on an nv2 context those with fp16
    /// or fp32 B whose operands each have a unit stride (T5's X·Wᵀ and dY·W, attention's per-head
    /// views); bf16 weights kept bf16 and operands strided both ways go to the KHR kernel.</summary>
    [Fact]
    public void WorkgroupScopeTakesProductsItCanAddress()
    {
        var forward = MatMulSpec.Rows(19584, 1024, 1024, transposeB: true);
        var backward = MatMulSpec.Rows(19584, 1024, 2816);
        Assert.True(MatMulKernel.OnWorkgroupScope(MatrixUnits.Nv2, forward, WeightPrecision.Fp16));
        Assert.True(MatMulKernel.OnWorkgroupScope(MatrixUnits.Nv2, backward, WeightPrecision.Fp16));
        Assert.True(MatMulKernel.OnWorkgroupScope(MatrixUnits.Nv2, MatMulSpec.AttentionPtV(32, 16, 612, 612, 64), WeightPrecision.Fp32));
        Assert.False(MatMulKernel.OnWorkgroupScope(MatrixUnits.Nv2, forward, WeightPrecision.Bf16));
        Assert.False(MatMulKernel.OnWorkgroupScope(MatrixUnits.Khr, forward, WeightPrecision.Fp16));
        Assert.False(MatMulKernel.OnWorkgroupScope(MatrixUnits.Nv2, forward with { AStrideK = 2, AStrideM = 2048 }, WeightPrecision.Fp16));
    }

    /// <summary>The workgroup-scope tiling follows the product: 128x256 blocks for wide products,
    /// 128x128 up to 128 columns, 128x64 up to 64, 64x64 where 128x256 blocks would be fewer than
    /// 128 (the decoder's 256 rows); where the driver's granularities rule one out, the first
    /// candidate that fits.</summary>
    [Fact]
    public void WorkgroupScopeTilingFollowsTheProduct()
    {
        var caps = Device(true, true, nv2: true);
        Assert.Equal(CoopMatTiling.WorkgroupLarge, CoopMatTiling.ForWorkgroupScope(caps, MatMulSpec.Rows(19584, 2816, 1024, transposeB: true)));
        Assert.Equal(CoopMatTiling.WorkgroupMedium, CoopMatTiling.ForWorkgroupScope(caps, MatMulSpec.Rows(19584, 128, 1024, transposeB: true)));
        Assert.Equal(CoopMatTiling.WorkgroupNarrow, CoopMatTiling.ForWorkgroupScope(caps, MatMulSpec.AttentionPtV(32, 16, 612, 612, 64)));
        Assert.Equal(CoopMatTiling.WorkgroupSmall, CoopMatTiling.ForWorkgroupScope(caps, MatMulSpec.Rows(256, 1024, 1024, transposeB: true)));
        // A driver that lists only 256 invocations: the small blocks' 128 do not fit.
        var only256 = caps with { CooperativeMatrix2Shapes = [new(256, 32, 32, 16)] };
        Assert.Equal(CoopMatTiling.WorkgroupLarge, CoopMatTiling.ForWorkgroupScope(only256, MatMulSpec.Rows(256, 1024, 1024, transposeB: true)));
    }

    /// <summary>VKPROMPT_COOPMAT takes its words alone or an extension with all (nv2,all); an
    /// unknown word or two extensions are refused, naming the variable, rather than silently
    /// running the defaults.</summary>
    [Theory]
    [InlineData(null), InlineData(""), InlineData("1"), InlineData("nv2"), InlineData("nv2,all"), InlineData("KHR, all"), InlineData("emulate")]
    public void CoopmatVariableTakesItsWordsAndCombinations(string? value) => GpuOptions.CheckCoopmatVariable(value ?? "");

    [Theory]
    [InlineData("nv3", "unknown value 'nv3'"), InlineData("khr,nv2", "more than one extension"), InlineData("all,yes", "unknown value 'yes'")]
    public void CoopmatVariableRefusesWhatItDoesNotKnow(string value, string message)
    {
        var e = Assert.Throws<GpuException>(() => GpuOptions.CheckCoopmatVariable(value));
        Assert.Contains($"VKPROMPT_COOPMAT={value}", e.Message);
        Assert.Contains(message, e.Message);
    }
}
