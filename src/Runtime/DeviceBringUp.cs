using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>Bringing a Vulkan device up: loading the loader, creating the instance (with the
/// validation layer where asked), listing and choosing physical devices, and creating the logical
/// device with the features and extensions its <see cref="DevicePlan"/> uses. What a
/// <see cref="GpuContext"/> does with the device afterwards is the context's.</summary>
internal static unsafe class DeviceBringUp
{
    /// <summary>Every Vulkan device, without creating a logical device.</summary>
    public static IReadOnlyList<DeviceCapabilities> ListDevices()
    {
        var vk = LoadVulkan();
        var instance = CreateInstance(vk, validation: null, default, out _, Vk.Version12);
        try { return Query(vk, instance, EnumerateDevices(vk, instance)); }
        finally { vk.DestroyInstance(instance, null); }
    }

    internal static List<DeviceCapabilities> Query(Vk vk, Instance instance, List<PhysicalDevice> devices) =>
        devices.Select((pd, i) => DeviceCapabilities.Query(vk, instance, pd, i, DeviceExtensions(vk, pd))).ToList();

    internal static Vk LoadVulkan()
    {
        try { return Vk.GetApi(); }
        catch (Exception e) when (e is DllNotFoundException or FileNotFoundException or InvalidOperationException or TypeInitializationException)
        {
            throw new GpuException("the Vulkan loader (libvulkan.so.1) was not found; install it with: sudo apt-get install libvulkan1 mesa-vulkan-drivers");
        }
    }

    /// <summary>The Vulkan API resolved through a host's vkGetInstanceProcAddr
    /// (<see cref="HostDevice.GetInstanceProcAddr"/>), so the context calls through the host's
    /// loader and layers. Device functions resolved through the instance work for every device of
    /// it (they dispatch on the device handle).</summary>
    internal static Vk LoadVulkan(Instance instance, nint getInstanceProcAddr)
    {
        var gipa = (delegate* unmanaged[Cdecl]<Instance, byte*, nint>)getInstanceProcAddr;
        return new Vk(new Silk.NET.Core.Contexts.LamdaNativeContext(name =>
        {
            if (name == "vkGetInstanceProcAddr") return getInstanceProcAddr;
            using var utf8 = new ScopedUtf8(name);
            nint f = gipa(instance, utf8.Ptr);
            // Global functions (vkEnumerateInstanceExtensionProperties, ...) answer only to a null instance.
            return f != 0 ? f : gipa(default, utf8.Ptr);
        }));
    }

    /// <summary>The index of the device <paramref name="spec"/> names (<see cref="GpuOptions.Device"/>).</summary>
    internal static int Choose(IReadOnlyList<DeviceCapabilities> caps, string spec)
    {
        string available = string.Join(", ", caps.Select(c => $"{c.Index}: {c.Name}"));
        static int Rank(string type) => type switch { "discrete" => 0, "integrated" => 1, "virtual" => 2, "cpu" => 3, _ => 4 };
        if (string.IsNullOrWhiteSpace(spec) || spec.Equals("auto", StringComparison.OrdinalIgnoreCase))
            return caps.OrderBy(c => Rank(c.DeviceType)).ThenBy(c => c.Index).First().Index;
        // auto:N, the N-th device (modulo their count) of the kind auto picks: how the ranks of an
        // MPI job on one machine spread over its GPUs, never onto a CPU device beside them.
        if (spec.StartsWith("auto:", StringComparison.OrdinalIgnoreCase) && int.TryParse(spec.AsSpan(5), out int local) && local >= 0)
        {
            int best = caps.Min(c => Rank(c.DeviceType));
            var kind = caps.Where(c => Rank(c.DeviceType) == best).OrderBy(c => c.Index).ToList();
            return kind[local % kind.Count].Index;
        }
        if (int.TryParse(spec, out int index))
        {
            if (index < 0 || index >= caps.Count)
                throw new GpuException($"device {index} does not exist; available: {available} (see 'vkprompt devices')");
            return index;
        }
        var match = caps.FirstOrDefault(c => c.Name.Contains(spec, StringComparison.OrdinalIgnoreCase));
        return match?.Index ?? throw new GpuException($"no Vulkan device name contains '{spec}'; available: {available}");
    }

    /// <summary>An instance, with the validation layer and its messenger where
    /// <paramref name="validation"/> names the setting that asked for it (<see cref="GpuOptions.Describe"/>).</summary>
    internal static Instance CreateInstance(Vk vk, string? validation, GCHandle logHandle, out DebugUtilsMessengerEXT messenger, uint apiVersion)
    {
        messenger = default;
        var layers = new List<string>();
        if (validation is not null)
        {
            if (!InstanceLayers(vk).Contains("VK_LAYER_KHRONOS_validation"))
                throw new GpuException($"validation was requested ({validation}) but VK_LAYER_KHRONOS_validation is not installed: sudo apt-get install vulkan-validationlayers");
            layers.Add("VK_LAYER_KHRONOS_validation");
        }
        var (extensions, flags) = ChooseInstanceExtensions(InstanceExtensions(vk), validation is not null);

        using var appName = new ScopedUtf8("VkPrompt");
        var appInfo = new ApplicationInfo
        {
            SType = StructureType.ApplicationInfo,
            PApplicationName = appName.Ptr,
            PEngineName = appName.Ptr,
            ApiVersion = apiVersion,
        };
        var layerPtrs = (byte**)SilkMarshal.StringArrayToPtr(layers);
        var extPtrs = (byte**)SilkMarshal.StringArrayToPtr(extensions);
        try
        {
            var enables = stackalloc ValidationFeatureEnableEXT[] { ValidationFeatureEnableEXT.SynchronizationValidationExt };
            var features = new ValidationFeaturesEXT
            {
                SType = StructureType.ValidationFeaturesExt,
                EnabledValidationFeatureCount = 1,
                PEnabledValidationFeatures = enables,
            };
            var info = new InstanceCreateInfo
            {
                SType = StructureType.InstanceCreateInfo,
                PApplicationInfo = &appInfo,
                EnabledLayerCount = (uint)layers.Count,
                PpEnabledLayerNames = layerPtrs,
                EnabledExtensionCount = (uint)extensions.Count,
                PpEnabledExtensionNames = extPtrs,
                Flags = flags,
                PNext = validation is not null ? &features : null,
            };
            var created = vk.CreateInstance(&info, null, out var instance);
            // The loader answers this when it found no driver manifest at all.
            if (created == Result.ErrorIncompatibleDriver) throw new GpuException(GpuContext.NoDeviceMessage);
            GpuException.Check(created, "vkCreateInstance");
            if (validation is not null)
            {
                using var fnName = new ScopedUtf8("vkCreateDebugUtilsMessengerEXT");
                var create = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerCreateInfoEXT*, AllocationCallbacks*, DebugUtilsMessengerEXT*, Result>)
                    vk.GetInstanceProcAddr(instance, fnName.Ptr).Handle;
                var mInfo = ValidationLog.CreateInfo(logHandle);
                DebugUtilsMessengerEXT m;
                var made = create(instance, &mInfo, null, &m);
                if (made != Result.Success)
                {
                    // The caller never sees the instance: it goes here.
                    vk.DestroyInstance(instance, null);
                    GpuException.Check(made, "vkCreateDebugUtilsMessengerEXT");
                }
                messenger = m;
            }
            return instance;
        }
        finally
        {
            SilkMarshal.Free((nint)layerPtrs);
            SilkMarshal.Free((nint)extPtrs);
        }
    }

    internal const string PortabilityEnumerationExtension = "VK_KHR_portability_enumeration";

    /// <summary>The instance extensions and creation flags to ask of a loader that lists
    /// <paramref name="available"/>: the validation layer's messenger and features where
    /// <paramref name="validation"/>, and VK_KHR_portability_enumeration with the
    /// enumerate-portability flag wherever the loader lists it. Since loader 1.3.216 a portability
    /// driver (MoltenVK, the only Vulkan on macOS and iOS) is enumerated only to an instance that
    /// asks so; elsewhere the extension and flag change nothing, and a loader without the
    /// extension gets neither (it would refuse the instance).</summary>
    internal static (List<string> Extensions, InstanceCreateFlags Flags) ChooseInstanceExtensions(IReadOnlySet<string> available, bool validation)
    {
        var extensions = new List<string>();
        if (validation) extensions.AddRange(["VK_EXT_debug_utils", "VK_EXT_validation_features"]);
        if (!available.Contains(PortabilityEnumerationExtension)) return (extensions, 0);
        extensions.Add(PortabilityEnumerationExtension);
        return (extensions, InstanceCreateFlags.EnumeratePortabilityBitKhr);
    }

    internal static List<PhysicalDevice> EnumerateDevices(Vk vk, Instance instance)
    {
        uint count = 0;
        GpuException.Check(vk.EnumeratePhysicalDevices(instance, &count, null), "vkEnumeratePhysicalDevices");
        var devices = new PhysicalDevice[count];
        fixed (PhysicalDevice* p = devices) GpuException.Check(vk.EnumeratePhysicalDevices(instance, &count, p), "vkEnumeratePhysicalDevices");
        return devices.ToList();
    }

    internal static HashSet<string> InstanceLayers(Vk vk)
    {
        uint count = 0;
        vk.EnumerateInstanceLayerProperties(&count, null);
        var props = new LayerProperties[count];
        fixed (LayerProperties* p = props) vk.EnumerateInstanceLayerProperties(&count, p);
        return props.Select(l => SilkMarshal.PtrToString((nint)l.LayerName)!).ToHashSet();
    }

    internal static HashSet<string> InstanceExtensions(Vk vk)
    {
        uint count = 0;
        vk.EnumerateInstanceExtensionProperties((byte*)null, &count, null);
        var props = new ExtensionProperties[count];
        fixed (ExtensionProperties* p = props) vk.EnumerateInstanceExtensionProperties((byte*)null, &count, p);
        return props.Select(e => SilkMarshal.PtrToString((nint)e.ExtensionName)!).ToHashSet();
    }

    internal static HashSet<string> DeviceExtensions(Vk vk, PhysicalDevice pd)
    {
        uint count = 0;
        vk.EnumerateDeviceExtensionProperties(pd, (byte*)null, &count, null);
        var props = new ExtensionProperties[count];
        fixed (ExtensionProperties* p = props) vk.EnumerateDeviceExtensionProperties(pd, (byte*)null, &count, p);
        return props.Select(e => SilkMarshal.PtrToString((nint)e.ExtensionName)!).ToHashSet();
    }

    /// <summary>The physical device's queue families, as Vulkan lists them.</summary>
    internal static QueueFamilyProperties[] QueueFamilies(Vk vk, PhysicalDevice pd)
    {
        uint count = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, null);
        var families = new QueueFamilyProperties[count];
        fixed (QueueFamilyProperties* p = families) vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, p);
        return families;
    }

    internal static uint ComputeQueueFamily(QueueFamilyProperties[] families)
    {
        // A compute queue that is also a graphics queue usually has timestamps and full speed;
        // a dedicated async-compute family is fine too, so take the first with compute.
        for (uint i = 0; i < families.Length; i++)
            if (families[i].QueueFlags.HasFlag(QueueFlags.ComputeBit)) return i;
        throw new GpuException("the selected Vulkan device has no compute queue");
    }

    /// <summary>The logical device for <paramref name="plan"/>: the features its kernels use and
    /// the extensions <see cref="DeviceExtensionNames"/> chooses.</summary>
    internal static Device CreateDevice(Vk vk, PhysicalDevice pd, uint family, DevicePlan plan)
    {
        var caps = plan.Capabilities;
        var units = plan.MatrixUnits;
        bool pipelineStatistics = plan.PipelineStatistics;
        float priority = 1f;
        var queueInfo = new DeviceQueueCreateInfo
        {
            SType = StructureType.DeviceQueueCreateInfo,
            QueueFamilyIndex = family,
            QueueCount = 1,
            PQueuePriorities = &priority,
        };
        // Only features that half-precision kernels may use are asked for, and only where present.
        var memoryModel = new PhysicalDeviceVulkanMemoryModelFeatures { SType = StructureType.PhysicalDeviceVulkanMemoryModelFeatures, VulkanMemoryModel = true };
        var nvCoopmat = new PhysicalDeviceCooperativeMatrixFeaturesNV { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesNV, CooperativeMatrix = true, PNext = &memoryModel };
        // The workgroup-scope kernel builds on the KHR extension, whose kernel runs the products it
        // cannot address as tensors, so it enables both.
        var coopmat2 = new PhysicalDeviceCooperativeMatrix2FeaturesNV
        {
            SType = StructureType.PhysicalDeviceCooperativeMatrix2FeaturesNV,
            CooperativeMatrixWorkgroupScope = true, CooperativeMatrixFlexibleDimensions = true, CooperativeMatrixTensorAddressing = true,
            PNext = &memoryModel,
        };
        // The bf16-fragment kernels declare the bf16 type and bf16 cooperative matrices.
        var bf16 = new PhysicalDeviceShaderBfloat16FeaturesKHR
        {
            SType = StructureType.PhysicalDeviceShaderBfloat16FeaturesKhr, ShaderBFloat16Type = true, ShaderBFloat16CooperativeMatrix = true,
            PNext = units == MatrixUnits.Nv2 ? &coopmat2 : &memoryModel,
        };
        var khrCoopmat = new PhysicalDeviceCooperativeMatrixFeaturesKHR
        {
            SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr, CooperativeMatrix = true,
            PNext = plan.Bf16FragmentsOnUnits ? &bf16 : bf16.PNext,
        };
        var executableInfo = new PhysicalDevicePipelineExecutablePropertiesFeaturesKHR
        {
            SType = StructureType.PhysicalDevicePipelineExecutablePropertiesFeaturesKhr,
            PipelineExecutableInfo = true,
            PNext = units is MatrixUnits.Khr or MatrixUnits.Nv2 ? &khrCoopmat : units == MatrixUnits.Nv ? &nvCoopmat : null,
        };
        var f16 = new PhysicalDeviceShaderFloat16Int8Features
        {
            SType = StructureType.PhysicalDeviceShaderFloat16Int8Features,
            ShaderFloat16 = caps.ShaderFloat16,
            ShaderInt8 = caps.ShaderInt8,
            PNext = pipelineStatistics ? &executableInfo : executableInfo.PNext,
        };
        var names = DeviceExtensionNames(plan);
        var extensions = (byte**)SilkMarshal.StringArrayToPtr(names);
        try
        {
            // Enabled wherever the device has it, so that any kernel may be pinned to a subgroup
            // size (DevicePlan.MatrixUnitsSubgroupPinned; the tests pin others on lavapipe).
            var sizeControl = new PhysicalDeviceSubgroupSizeControlFeatures
            {
                SType = StructureType.PhysicalDeviceSubgroupSizeControlFeatures,
                SubgroupSizeControl = true, ComputeFullSubgroups = true,
                PNext = &f16,
            };
            // Every submit signals the context's timeline semaphore (GpuTicket); core in 1.2.
            var timeline = new PhysicalDeviceTimelineSemaphoreFeatures
            {
                SType = StructureType.PhysicalDeviceTimelineSemaphoreFeatures,
                TimelineSemaphore = true,
                PNext = caps.SubgroupSizeControl ? &sizeControl : &f16,
            };
            var s16 = new PhysicalDevice16BitStorageFeatures
            {
                SType = StructureType.PhysicalDevice16BitStorageFeatures,
                StorageBuffer16BitAccess = caps.StorageBuffer16Bit,
                PNext = &timeline,
            };
            var info = new DeviceCreateInfo
            {
                SType = StructureType.DeviceCreateInfo,
                QueueCreateInfoCount = 1,
                PQueueCreateInfos = &queueInfo,
                EnabledExtensionCount = (uint)names.Count,
                PpEnabledExtensionNames = names.Count > 0 ? extensions : null,
                PNext = &s16,
            };
            GpuException.Check(vk.CreateDevice(pd, &info, null, out var device), "vkCreateDevice");
            return device;
        }
        finally { SilkMarshal.Free((nint)extensions); }
    }

    /// <summary>The device extensions <see cref="CreateDevice"/> enables for <paramref name="plan"/>:
    /// its matrix units' (VK_KHR_shader_bfloat16 too where they multiply bf16 fragments), VK_KHR_pipeline_executable_properties where it collects pipeline
    /// statistics, VK_EXT_memory_budget where the pool keeps to the budget, VK_EXT_subgroup_size_control
    /// wherever the device can pin a subgroup size with it (<see cref="DeviceCapabilities.SubgroupSizeControl"/>), and
    /// VK_KHR_portability_subset wherever the device lists it, as the spec requires of a
    /// portability driver (MoltenVK). None of the subset's optional features is enabled: they are
    /// graphics, image-view and event features no kernel uses (<see cref="DeviceCapabilities.PortabilitySubsetUnsupported"/>).</summary>
    internal static List<string> DeviceExtensionNames(DevicePlan plan)
    {
        var units = plan.MatrixUnits;
        var names = new List<string>();
        if (units is MatrixUnits.Khr or MatrixUnits.Nv2) names.Add(DeviceCapabilities.KhrCooperativeMatrixExtension);
        if (units == MatrixUnits.Nv) names.Add(DeviceCapabilities.NvCooperativeMatrixExtension);
        if (units == MatrixUnits.Nv2) names.Add(DeviceCapabilities.NvCooperativeMatrix2Extension);
        if (plan.Bf16FragmentsOnUnits) names.Add(DeviceCapabilities.ShaderBfloat16Extension);
        if (plan.PipelineStatistics) names.Add(DeviceCapabilities.PipelineExecutablePropertiesExtension);
        if (plan.MemoryBudget) names.Add(DeviceCapabilities.MemoryBudgetExtension);
        if (plan.Capabilities.SubgroupSizeControl) names.Add(DeviceCapabilities.SubgroupSizeControlExtension);
        if (plan.Capabilities.PortabilitySubset) names.Add(DeviceCapabilities.PortabilitySubsetExtension);
        return names;
    }
}

/// <summary>A UTF-8 copy of a string in unmanaged memory, for the length of a using block.</summary>
internal readonly unsafe struct ScopedUtf8 : IDisposable
{
    public readonly byte* Ptr;
    public ScopedUtf8(string s) => Ptr = (byte*)SilkMarshal.StringToPtr(s);
    public void Dispose() => SilkMarshal.Free((nint)Ptr);
}
