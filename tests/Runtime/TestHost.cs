using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;
using VkPrompt.Cli;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// A Vulkan instance and device as a host application (a renderer, an engine) owns them: its own
/// validation layer and messenger, one compute queue, created without VkPrompt. The layer reports
/// a device destroyed while any of its objects live, and any use of a destroyed handle, so no
/// <see cref="Errors"/> after <see cref="Dispose"/> shows that whatever borrowed the device
/// released everything it made and destroyed nothing it was lent.
/// </summary>
public sealed unsafe class TestHost : IDisposable
{
    public Vk Vk { get; } = Vk.GetApi();
    public Instance Instance { get; }
    public PhysicalDevice PhysicalDevice { get; }
    public Device Device { get; }
    public Queue Queue { get; }
    public uint QueueFamily { get; }

    /// <summary>The features the device was created with, as <see cref="HostFeatures.FromChain"/>
    /// read them from the VkDeviceCreateInfo's chain.</summary>
    public HostFeatures Enabled { get; }

    /// <summary>The validation errors reported so far, from instance creation to destruction.</summary>
    public ConcurrentQueue<string> Errors { get; } = new();

    readonly GCHandle errorsHandle;
    readonly DebugUtilsMessengerEXT messenger;
    bool disposed;

    /// <summary>The device extensions the device was created with.</summary>
    public IReadOnlyList<string> Extensions { get; } = [];

    /// <param name="sixteenBit">also enable storageBuffer16BitAccess and shaderFloat16 (what
    /// 16-bit weights and the emulated matrix units need); else timeline semaphores alone.</param>
    /// <param name="matrixUnits">also enable VK_KHR_cooperative_matrix with its feature, the
    /// Vulkan memory model and VK_EXT_subgroup_size_control (whose full subgroups the KHR kernels
    /// need), where the device lists them (16-bit features too).</param>
    public TestHost(bool sixteenBit = false, bool matrixUnits = false)
    {
        errorsHandle = GCHandle.Alloc(Errors);
        var messengerInfo = MessengerInfo(errorsHandle);
        try
        {
            Instance = CreateInstance(Vk, &messengerInfo);
            messenger = CreateMessenger(Vk, Instance, &messengerInfo);
            PhysicalDevice = PhysicalDevices(Vk, Instance)[ChosenIndex];
            QueueFamily = ComputeFamily(Vk, PhysicalDevice);
            var listed = DeviceBringUp.DeviceExtensions(Vk, PhysicalDevice);
            if (matrixUnits && listed.Contains("VK_KHR_cooperative_matrix"))
                Extensions = listed.Contains("VK_EXT_subgroup_size_control") ? ["VK_KHR_cooperative_matrix", "VK_EXT_subgroup_size_control"] : ["VK_KHR_cooperative_matrix"];
            (Device, Enabled) = CreateDevice(Vk, PhysicalDevice, QueueFamily, sixteenBit || matrixUnits, Extensions);
            Vk.GetDeviceQueue(Device, QueueFamily, 0, out var queue);
            Queue = queue;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (Device.Handle != 0) Vk.DestroyDevice(Device, null);
        if (messenger.Handle != 0)
        {
            var destroy = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)
                Vk.GetInstanceProcAddr(Instance, "vkDestroyDebugUtilsMessengerEXT").Handle;
            destroy(Instance, messenger, null);
        }
        if (Instance.Handle != 0) Vk.DestroyInstance(Instance, null);
        errorsHandle.Free();
    }

    static DebugUtilsMessengerCreateInfoEXT MessengerInfo(GCHandle errors) => new()
    {
        SType = StructureType.DebugUtilsMessengerCreateInfoExt,
        MessageSeverity = DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt | DebugUtilsMessageSeverityFlagsEXT.WarningBitExt,
        MessageType = DebugUtilsMessageTypeFlagsEXT.GeneralBitExt | DebugUtilsMessageTypeFlagsEXT.ValidationBitExt,
        PfnUserCallback = new PfnDebugUtilsMessengerCallbackEXT(
            (delegate* unmanaged[Cdecl]<DebugUtilsMessageSeverityFlagsEXT, DebugUtilsMessageTypeFlagsEXT, DebugUtilsMessengerCallbackDataEXT*, void*, Bool32>)&OnMessage),
        PUserData = (void*)GCHandle.ToIntPtr(errors),
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static Bool32 OnMessage(DebugUtilsMessageSeverityFlagsEXT severity, DebugUtilsMessageTypeFlagsEXT type, DebugUtilsMessengerCallbackDataEXT* data, void* user)
    {
        if (severity.HasFlag(DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt) && GCHandle.FromIntPtr((nint)user).Target is ConcurrentQueue<string> errors)
            errors.Enqueue(Marshal.PtrToStringUTF8((nint)data->PMessage) ?? "");
        return false;
    }

    /// <summary>The messenger info also goes in the pNext chain so vkCreateInstance and
    /// vkDestroyInstance, which run without the messenger object, are checked too.</summary>
    static Instance CreateInstance(Vk vk, DebugUtilsMessengerCreateInfoEXT* messengerInfo)
    {
        var layers = (byte**)SilkMarshal.StringArrayToPtr(["VK_LAYER_KHRONOS_validation"]);
        var extensions = (byte**)SilkMarshal.StringArrayToPtr(["VK_EXT_debug_utils"]);
        try
        {
            var app = new ApplicationInfo { SType = StructureType.ApplicationInfo, ApiVersion = Vk.Version12 };
            var info = new InstanceCreateInfo
            {
                SType = StructureType.InstanceCreateInfo,
                PApplicationInfo = &app,
                EnabledLayerCount = 1,
                PpEnabledLayerNames = layers,
                EnabledExtensionCount = 1,
                PpEnabledExtensionNames = extensions,
                PNext = messengerInfo,
            };
            Assert.Equal(Result.Success, vk.CreateInstance(&info, null, out var instance));
            return instance;
        }
        finally
        {
            SilkMarshal.Free((nint)layers);
            SilkMarshal.Free((nint)extensions);
        }
    }

    static DebugUtilsMessengerEXT CreateMessenger(Vk vk, Instance instance, DebugUtilsMessengerCreateInfoEXT* info)
    {
        var create = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerCreateInfoEXT*, AllocationCallbacks*, DebugUtilsMessengerEXT*, Result>)
            vk.GetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT").Handle;
        DebugUtilsMessengerEXT messenger;
        Assert.Equal(Result.Success, create(instance, info, null, &messenger));
        return messenger;
    }

    /// <summary>The index of the device GpuContext.Create would pick (VKPROMPT_DEVICE) among
    /// <see cref="GpuContext.ListDevices"/>.</summary>
    public static int ChosenIndex => DeviceBringUp.Choose(GpuContext.ListDevices(), EnvironmentSettings.GpuOptions().Device);

    /// <summary>The physical devices; the tests take the one GpuContext.Create would pick
    /// (VKPROMPT_DEVICE), so they run where the rest of the suite runs.</summary>
    static PhysicalDevice[] PhysicalDevices(Vk vk, Instance instance)
    {
        uint count = 0;
        Assert.Equal(Result.Success, vk.EnumeratePhysicalDevices(instance, &count, null));
        var devices = new PhysicalDevice[count];
        fixed (PhysicalDevice* p = devices) Assert.Equal(Result.Success, vk.EnumeratePhysicalDevices(instance, &count, p));
        return devices;
    }

    static uint ComputeFamily(Vk vk, PhysicalDevice pd)
    {
        uint count = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, null);
        var families = new QueueFamilyProperties[count];
        fixed (QueueFamilyProperties* p = families) vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, p);
        return (uint)Array.FindIndex(families, f => f.QueueFlags.HasFlag(QueueFlags.ComputeBit));
    }

    /// <summary>The device as the host declares it to <see cref="GpuContext.Adopt(VkPrompt.Runtime.HostDevice, GpuOptions?)"/>.</summary>
    public VkPrompt.Runtime.HostDevice Declared => new()
    {
        GetInstanceProcAddr = Vk.Context.GetProcAddress("vkGetInstanceProcAddr"),
        Instance = Instance,
        PhysicalDevice = PhysicalDevice,
        Device = Device,
        ApiVersion = Vk.Version12,
        QueueFamily = QueueFamily,
        EnabledFeatures = Enabled,
        EnabledExtensions = Extensions,
    };

    /// <summary>A device with only timeline semaphores enabled (VkPrompt's one requirement), as a
    /// host that knows little of VkPrompt would create it: fp32 weights only; with
    /// <paramref name="sixteenBit"/> 16-bit storage and fp16 arithmetic too, and with the KHR
    /// cooperative matrix among <paramref name="extensions"/> its feature and the memory model, and
    /// with VK_EXT_subgroup_size_control among them its two features.</summary>
    static (Device, HostFeatures) CreateDevice(Vk vk, PhysicalDevice pd, uint family, bool sixteenBit, IReadOnlyList<string> extensions)
    {
        var sizeControl = new PhysicalDeviceSubgroupSizeControlFeatures
        {
            SType = StructureType.PhysicalDeviceSubgroupSizeControlFeatures, SubgroupSizeControl = true, ComputeFullSubgroups = true,
        };
        var model = new PhysicalDeviceVulkanMemoryModelFeatures
        {
            SType = StructureType.PhysicalDeviceVulkanMemoryModelFeatures, VulkanMemoryModel = true,
            PNext = extensions.Contains("VK_EXT_subgroup_size_control") ? &sizeControl : null,
        };
        var coopmat = new PhysicalDeviceCooperativeMatrixFeaturesKHR { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr, CooperativeMatrix = true, PNext = &model };
        var f16 = new PhysicalDeviceShaderFloat16Int8Features
        {
            SType = StructureType.PhysicalDeviceShaderFloat16Int8Features, ShaderFloat16 = true,
            PNext = extensions.Contains("VK_KHR_cooperative_matrix") ? &coopmat : null,
        };
        var s16 = new PhysicalDevice16BitStorageFeatures { SType = StructureType.PhysicalDevice16BitStorageFeatures, StorageBuffer16BitAccess = true, PNext = &f16 };
        var timeline = new PhysicalDeviceTimelineSemaphoreFeatures
        {
            SType = StructureType.PhysicalDeviceTimelineSemaphoreFeatures, TimelineSemaphore = true, PNext = sixteenBit ? &s16 : null,
        };
        float priority = 1f;
        var queueInfo = new DeviceQueueCreateInfo
        {
            SType = StructureType.DeviceQueueCreateInfo,
            QueueFamilyIndex = family,
            QueueCount = 1,
            PQueuePriorities = &priority,
        };
        var names = (byte**)SilkMarshal.StringArrayToPtr(extensions.ToArray());
        try
        {
            var info = new DeviceCreateInfo
            {
                SType = StructureType.DeviceCreateInfo, QueueCreateInfoCount = 1, PQueueCreateInfos = &queueInfo, PNext = &timeline,
                EnabledExtensionCount = (uint)extensions.Count, PpEnabledExtensionNames = names,
            };
            Assert.Equal(Result.Success, vk.CreateDevice(pd, &info, null, out var device));
            return (device, HostFeatures.FromChain((nint)(&info)));
        }
        finally { SilkMarshal.Free((nint)names); }
    }
}
