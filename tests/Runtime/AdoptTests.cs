using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;
using VkPrompt.Cli;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// A host application owns the instance and device (with a validation layer and a messenger of
/// its own) and lends them to VkPrompt. The layer reports a device destroyed while any of its
/// objects live, and any use of a destroyed handle, so zero errors over the whole lifetime shows
/// that the context released everything it made and destroyed nothing it was lent.
/// </summary>
public sealed unsafe class AdoptTests
{
    [Fact]
    public void RunsKernelsOnHostDeviceAndReleasesOnlyWhatItCreated()
    {
        var errors = new ConcurrentQueue<string>();
        var errorsHandle = GCHandle.Alloc(errors);
        var vk = Vk.GetApi();
        var messengerInfo = MessengerInfo(errorsHandle);
        Instance instance = default;
        DebugUtilsMessengerEXT messenger = default;
        Device device = default;
        try
        {
            instance = CreateInstance(vk, &messengerInfo);
            messenger = CreateMessenger(vk, instance, &messengerInfo);
            var physicalDevice = ChoosePhysicalDevice(vk, instance);
            uint family = ComputeFamily(vk, physicalDevice);
            device = CreateDevice(vk, physicalDevice, family);
            vk.GetDeviceQueue(device, family, 0, out var queue);

            const int n = 1000;
            var x = Check.Random(n, 1);
            var y = Check.Random(n, 2);
            float[] result;
            using (var ctx = GpuContext.Adopt(vk, instance, physicalDevice, device, queue, family, EnvironmentSettings.GpuOptions() with { PipelineCacheDirectory = null }))
            {
                using var gx = GpuBuffer.From<float>(ctx, x);
                using var gy = GpuBuffer.From<float>(ctx, y);
                using (var g = new CommandGraph(ctx))
                {
                    AddKernel.Forward(g, gx, gy, n, 2f);
                    g.Run();
                }
                result = gx.Download<float>();
            }

            // The host's device still works after the context is gone.
            Assert.Equal(Result.Success, vk.DeviceWaitIdle(device));
            AddReference.Forward(x, y, 2f);
            Check.Close(x, result, 1e-6, "add on an adopted device");
        }
        finally
        {
            if (device.Handle != 0) vk.DestroyDevice(device, null);
            if (messenger.Handle != 0) DestroyMessenger(vk, instance, messenger);
            if (instance.Handle != 0) vk.DestroyInstance(instance, null);
            errorsHandle.Free();
        }
        Assert.True(errors.IsEmpty, $"{errors.Count} validation error(s):\n" + string.Join("\n", errors));
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

    static void DestroyMessenger(Vk vk, Instance instance, DebugUtilsMessengerEXT messenger)
    {
        var destroy = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)
            vk.GetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT").Handle;
        destroy(instance, messenger, null);
    }

    /// <summary>The device GpuContext.Create would pick (VKPROMPT_DEVICE), so the test runs
    /// where the rest of the suite runs.</summary>
    static PhysicalDevice ChoosePhysicalDevice(Vk vk, Instance instance)
    {
        uint count = 0;
        Assert.Equal(Result.Success, vk.EnumeratePhysicalDevices(instance, &count, null));
        var devices = new PhysicalDevice[count];
        fixed (PhysicalDevice* p = devices) Assert.Equal(Result.Success, vk.EnumeratePhysicalDevices(instance, &count, p));
        return devices[DeviceBringUp.Choose(GpuContext.ListDevices(), EnvironmentSettings.GpuOptions().Device)];
    }

    static uint ComputeFamily(Vk vk, PhysicalDevice pd)
    {
        uint count = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, null);
        var families = new QueueFamilyProperties[count];
        fixed (QueueFamilyProperties* p = families) vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, p);
        return (uint)Array.FindIndex(families, f => f.QueueFlags.HasFlag(QueueFlags.ComputeBit));
    }

    static Device CreateDevice(Vk vk, PhysicalDevice pd, uint family)
    {
        float priority = 1f;
        var queueInfo = new DeviceQueueCreateInfo
        {
            SType = StructureType.DeviceQueueCreateInfo,
            QueueFamilyIndex = family,
            QueueCount = 1,
            PQueuePriorities = &priority,
        };
        var info = new DeviceCreateInfo { SType = StructureType.DeviceCreateInfo, QueueCreateInfoCount = 1, PQueueCreateInfos = &queueInfo };
        Assert.Equal(Result.Success, vk.CreateDevice(pd, &info, null, out var device));
        return device;
    }
}
