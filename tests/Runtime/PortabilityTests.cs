using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>MoltenVK's two extensions: the instance enumerates portability drivers where the
/// loader lists VK_KHR_portability_enumeration (lavapipe's loader does) and is unchanged where it
/// does not; a device that lists VK_KHR_portability_subset is created with it, and the plan
/// prints what the subset lacks.</summary>
public sealed class PortabilityTests
{
    static readonly string[] ValidationExtensions = ["VK_EXT_debug_utils", "VK_EXT_validation_features"];

    [SkippableFact]
    public void TheInstanceEnumeratesPortabilityDriversWhereTheLoaderListsTheExtension()
    {
        var available = DeviceBringUp.InstanceExtensions(DeviceBringUp.LoadVulkan());
        Skip.IfNot(available.Contains(DeviceBringUp.PortabilityEnumerationExtension), "this Vulkan loader is older than 1.3.216 and lists no VK_KHR_portability_enumeration");

        var (extensions, flags) = DeviceBringUp.ChooseInstanceExtensions(available, validation: false);
        Assert.Equal([DeviceBringUp.PortabilityEnumerationExtension], extensions);
        Assert.Equal(InstanceCreateFlags.EnumeratePortabilityBitKhr, flags);
        (extensions, flags) = DeviceBringUp.ChooseInstanceExtensions(available, validation: true);
        Assert.Equal([.. ValidationExtensions, DeviceBringUp.PortabilityEnumerationExtension], extensions);
        Assert.Equal(InstanceCreateFlags.EnumeratePortabilityBitKhr, flags);

        // The same loader without the extension: neither it nor the flag, the rest unchanged.
        var without = available.Where(e => e != DeviceBringUp.PortabilityEnumerationExtension).ToHashSet();
        (extensions, flags) = DeviceBringUp.ChooseInstanceExtensions(without, validation: false);
        Assert.Empty(extensions);
        Assert.Equal((InstanceCreateFlags)0, flags);
        (extensions, flags) = DeviceBringUp.ChooseInstanceExtensions(without, validation: true);
        Assert.Equal(ValidationExtensions, extensions);
        Assert.Equal((InstanceCreateFlags)0, flags);
    }

    /// <summary>lavapipe is no portability driver: nothing of the subset is enabled or printed. The
    /// same device as a portability driver that lacks events and triangle fans (as MoltenVK
    /// reports on some Macs) enables the extension beside the others and prints the gaps.</summary>
    [SkippableFact]
    public void ADeviceListingThePortabilitySubsetIsCreatedWithIt()
    {
        var lavapipe = GpuContext.ListDevices().FirstOrDefault(d => d.DriverName == "llvmpipe");
        Skip.If(lavapipe is null, "lavapipe is not visible to the loader here");
        Assert.False(lavapipe.PortabilitySubset);
        Assert.Empty(lavapipe.PortabilitySubsetUnsupported);
        var plan = DevicePlan.For(lavapipe, new GpuOptions());
        Assert.DoesNotContain(DeviceCapabilities.PortabilitySubsetExtension, DeviceBringUp.DeviceExtensionNames(plan));
        Assert.Null(plan.ToJson()["portabilitySubset"]);

        var portable = DevicePlan.For(lavapipe with { PortabilitySubset = true, PortabilitySubsetUnsupported = ["events", "triangleFans"] }, new GpuOptions());
        Assert.Equal([.. DeviceBringUp.DeviceExtensionNames(plan), DeviceCapabilities.PortabilitySubsetExtension], DeviceBringUp.DeviceExtensionNames(portable));
        Assert.Equal("""{"unsupported":["events","triangleFans"]}""", portable.ToJson()["portabilitySubset"]!.ToJsonString());
    }

    [Fact]
    public void TheSubsetsMissingFeaturesAreNamedAsVulkanNamesThem()
    {
        var all = new PhysicalDevicePortabilitySubsetFeaturesKHR
        {
            ConstantAlphaColorBlendFactors = true, Events = true, ImageViewFormatReinterpretation = true, ImageViewFormatSwizzle = true,
            ImageView2DOn3DImage = true, MultisampleArrayImage = true, MutableComparisonSamplers = true, PointPolygons = true,
            SamplerMipLodBias = true, SeparateStencilMaskRef = true, ShaderSampleRateInterpolationFunctions = true,
            TessellationIsolines = true, TessellationPointMode = true, TriangleFans = true, VertexAttributeAccessBeyondStride = true,
        };
        Assert.Empty(DeviceCapabilities.PortabilitySubsetGaps(all));
        Assert.Equal(["events", "triangleFans"], DeviceCapabilities.PortabilitySubsetGaps(all with { Events = false, TriangleFans = false }));
        Assert.Equal(15, DeviceCapabilities.PortabilitySubsetGaps(default).Count);
    }
}
