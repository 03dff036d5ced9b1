using System.Diagnostics;
using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>
/// One Vulkan device and everything VkPrompt keeps on it: memory pool, kernels, pipeline cache.
/// It either creates its own instance and device (<see cref="Create"/>) or adopts handles a host
/// already owns (<see cref="Adopt"/>); it destroys exactly what it created and nothing else.
/// </summary>
public sealed unsafe class GpuContext : IDisposable
{
    public Vk Vk { get; }
    public Instance Instance { get; }
    public PhysicalDevice PhysicalDevice { get; }
    public Device Device { get; }
    public Queue Queue { get; }
    public uint QueueFamily { get; }
    public DeviceCapabilities Capabilities { get; }
    public ValidationLog Validation { get; } = new();
    public GpuOptions Options { get; }
    public MemoryPool Memory { get; }

    /// <summary>Which build of the cooperative-matrix kernel runs the products with 16-bit
    /// weights, if any: on the matrix units through VK_KHR_cooperative_matrix or
    /// VK_NV_cooperative_matrix where <see cref="GpuOptions.CooperativeMatrix"/> asked for them,
    /// the device has them and this context created the device; or emulated
    /// (<see cref="GpuOptions.CooperativeMatrixEmulation"/>).</summary>
    public MatrixUnits MatrixUnits { get; }

    /// <summary>Products with 16-bit weights run through the cooperative-matrix kernel, on the
    /// matrix units or emulated (<see cref="MatrixUnits"/>).</summary>
    public bool CooperativeMatrix => MatrixUnits != MatrixUnits.None;

    /// <summary>The cooperative-matrix kernel runs with its matrix operations emulated
    /// (<see cref="GpuOptions.CooperativeMatrixEmulation"/>, matmul_coopmat_emulated.comp).</summary>
    public bool CooperativeMatrixEmulated => MatrixUnits == MatrixUnits.Emulated;

    /// <summary>The subgroup size the cooperative-matrix kernel is built for: the device's, or the
    /// 32 invocations the emulation groups together whatever the device's.</summary>
    internal uint CoopMatSubgroupSize => CooperativeMatrixEmulated ? 32 : Capabilities.SubgroupSize;

    /// <summary>Each kernel's <see cref="Runtime.Kernel.Statistics"/> are collected: where
    /// <see cref="GpuOptions.PipelineStatistics"/> asks, the device reports them and this context
    /// created the device (with the extension enabled).</summary>
    public bool PipelineStatistics { get; }

    /// <summary>Every kernel created so far, in the order it was first asked for.</summary>
    public IReadOnlyCollection<Kernel> Kernels => kernels.Values;

    /// <summary>The storage-buffer range kernels may bind, after any test override.</summary>
    public long MaxBindingBytes { get; }

    /// <summary>The tilings <see cref="Kernels.MatMulTuner"/> measured fastest on this device.</summary>
    internal Kernels.MatMulTunings MatMulTunings { get; } = new();

    readonly bool ownsInstance, ownsDevice;
    readonly GCHandle validationHandle;
    readonly DebugUtilsMessengerEXT messenger;
    readonly CommandPool commandPool;
    readonly Fence fence;
    readonly PipelineCacheStore pipelineCache;
    readonly Dictionary<KernelKey, Kernel> kernels = new();
    bool disposed;

    internal PipelineCache PipelineCache => pipelineCache.Handle;

    GpuContext(Vk vk, Instance instance, PhysicalDevice pd, Device device, Queue queue, uint family,
               DeviceCapabilities caps, GpuOptions options, MatrixUnits matrixUnits, bool ownsInstance, bool ownsDevice,
               GCHandle validationHandle, DebugUtilsMessengerEXT messenger, ValidationLog validation)
    {
        Vk = vk; Instance = instance; PhysicalDevice = pd; Device = device; Queue = queue; QueueFamily = family;
        MatrixUnits = matrixUnits;
        PipelineStatistics = ownsDevice && options.PipelineStatistics && caps.PipelineExecutableStatistics;
        Capabilities = caps; Options = options; this.ownsInstance = ownsInstance; this.ownsDevice = ownsDevice;
        this.validationHandle = validationHandle; this.messenger = messenger; Validation = validation;
        MaxBindingBytes = Math.Min(caps.MaxStorageBufferRange, options.MaxStorageBufferRangeOverride ?? long.MaxValue);

        var poolInfo = new CommandPoolCreateInfo
        {
            SType = StructureType.CommandPoolCreateInfo,
            QueueFamilyIndex = family,
            Flags = CommandPoolCreateFlags.ResetCommandBufferBit,
        };
        GpuException.Check(vk.CreateCommandPool(device, &poolInfo, null, out commandPool), "vkCreateCommandPool");
        var fenceInfo = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
        GpuException.Check(vk.CreateFence(device, &fenceInfo, null, out fence), "vkCreateFence");
        Memory = new MemoryPool(this);
        pipelineCache = new PipelineCacheStore(this);
    }

    /// <summary>Lists every Vulkan device without creating a logical device.</summary>
    public static IReadOnlyList<DeviceCapabilities> ListDevices()
    {
        var vk = LoadVulkan();
        var instance = CreateInstance(vk, validation: false, default, out _, Vk.Version12);
        try { return EnumerateDevices(vk, instance).Select((pd, i) => DeviceCapabilities.Query(vk, instance, pd, i, DeviceExtensions(vk, pd))).ToList(); }
        finally { vk.DestroyInstance(instance, null); }
    }

    /// <summary>Creates an instance and a device chosen by <see cref="GpuOptions.Device"/>.</summary>
    public static GpuContext Create(GpuOptions? options = null)
    {
        GpuOptions.CheckCoopmatVariable();
        options ??= new GpuOptions();
        var vk = LoadVulkan();
        var validation = new ValidationLog();
        var handle = GCHandle.Alloc(validation);
        Instance instance = default;
        try
        {
            // The workgroup-scope kernel is SPIR-V 1.6, which needs Vulkan 1.3; everything else is 1.2.
            instance = CreateInstance(vk, options.Validation, handle, out var messenger,
                                      options.CooperativeMatrix && options.CooperativeMatrixExtension == MatrixUnitsExtension.Nv2 ? Vk.Version13 : Vk.Version12);
            var devices = EnumerateDevices(vk, instance);
            if (devices.Count == 0) throw new GpuException(NoDeviceMessage);
            var caps = devices.Select((pd, i) => DeviceCapabilities.Query(vk, instance, pd, i, DeviceExtensions(vk, pd))).ToList();
            int chosen = Choose(caps, options.Device);
            var units = ChooseMatrixUnits(caps[chosen], options, Runtime.Kernel.IsEmbedded(KhrMatMulShader), Runtime.Kernel.IsEmbedded(Nv2MatMulShader));
            var pd = devices[chosen];
            uint family = ComputeQueueFamily(vk, pd);
            var device = CreateDevice(vk, pd, family, caps[chosen], units, options.PipelineStatistics && caps[chosen].PipelineExecutableStatistics);
            vk.GetDeviceQueue(device, family, 0, out var queue);
            options.Log?.Invoke($"device {chosen}: {caps[chosen].Name} ({caps[chosen].DriverName} {caps[chosen].DriverVersion})");
            return new GpuContext(vk, instance, pd, device, queue, family, caps[chosen], options, units, true, true, handle, messenger, validation);
        }
        catch
        {
            if (instance.Handle != 0) vk.DestroyInstance(instance, null);
            handle.Free();
            throw;
        }
    }

    /// <summary>Uses a device the host already created. The caller keeps ownership of every
    /// handle passed in and must keep them alive until this context is disposed. The
    /// capabilities describe the physical device, since Vulkan cannot report what a host enabled:
    /// fp16/bf16 weights need the host to have enabled storageBuffer16BitAccess. Products run on
    /// the portable kernels, never the cooperative-matrix one.</summary>
    public static GpuContext Adopt(Vk vk, Instance instance, PhysicalDevice physicalDevice, Device device, Queue queue, uint queueFamily, GpuOptions? options = null)
    {
        options ??= new GpuOptions();
        var caps = DeviceCapabilities.Query(vk, instance, physicalDevice, 0, DeviceExtensions(vk, physicalDevice));
        // An adopted device has whatever features its host enabled, which Vulkan cannot report,
        // so only a device a context created runs the cooperative-matrix kernel.
        return new GpuContext(vk, instance, physicalDevice, device, queue, queueFamily, caps, options, MatrixUnits.None, false, false, default, default, new ValidationLog());
    }

    /// <summary>What to tell a user whose machine has no Vulkan driver at all.</summary>
    public const string NoDeviceMessage = "no Vulkan device found; install a driver (e.g. sudo apt-get install mesa-vulkan-drivers for the lavapipe CPU device)";

    static Vk LoadVulkan()
    {
        try { return Vk.GetApi(); }
        catch (Exception e) when (e is DllNotFoundException or FileNotFoundException or InvalidOperationException or TypeInitializationException)
        {
            throw new GpuException("the Vulkan loader (libvulkan.so.1) was not found; install it with: sudo apt-get install libvulkan1 mesa-vulkan-drivers");
        }
    }

    internal static int Choose(IReadOnlyList<DeviceCapabilities> caps, string spec)
    {
        string available = string.Join(", ", caps.Select(c => $"{c.Index}: {c.Name}"));
        if (string.IsNullOrWhiteSpace(spec) || spec.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            static int Rank(string type) => type switch { "discrete" => 0, "integrated" => 1, "virtual" => 2, "cpu" => 3, _ => 4 };
            return caps.OrderBy(c => Rank(c.DeviceType)).ThenBy(c => c.Index).First().Index;
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

    static Instance CreateInstance(Vk vk, bool validation, GCHandle logHandle, out DebugUtilsMessengerEXT messenger, uint apiVersion)
    {
        messenger = default;
        var layers = new List<string>();
        var extensions = new List<string>();
        var available = InstanceExtensions(vk);
        if (validation)
        {
            if (!InstanceLayers(vk).Contains("VK_LAYER_KHRONOS_validation"))
                throw new GpuException("validation was requested (VKPROMPT_VALIDATION=1) but VK_LAYER_KHRONOS_validation is not installed: sudo apt-get install vulkan-validationlayers");
            layers.Add("VK_LAYER_KHRONOS_validation");
            extensions.Add("VK_EXT_debug_utils");
            extensions.Add("VK_EXT_validation_features");
        }
        bool portability = available.Contains("VK_KHR_portability_enumeration");
        if (portability) extensions.Add("VK_KHR_portability_enumeration");

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
                Flags = portability ? InstanceCreateFlags.EnumeratePortabilityBitKhr : 0,
                PNext = validation ? &features : null,
            };
            var created = vk.CreateInstance(&info, null, out var instance);
            // The loader answers this when it found no driver manifest at all.
            if (created == Result.ErrorIncompatibleDriver) throw new GpuException(NoDeviceMessage);
            GpuException.Check(created, "vkCreateInstance");
            if (validation)
            {
                using var fnName = new ScopedUtf8("vkCreateDebugUtilsMessengerEXT");
                var create = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerCreateInfoEXT*, AllocationCallbacks*, DebugUtilsMessengerEXT*, Result>)
                    vk.GetInstanceProcAddr(instance, fnName.Ptr).Handle;
                var mInfo = ValidationLog.CreateInfo(logHandle);
                DebugUtilsMessengerEXT m;
                GpuException.Check(create(instance, &mInfo, null, &m), "vkCreateDebugUtilsMessengerEXT");
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

    static List<PhysicalDevice> EnumerateDevices(Vk vk, Instance instance)
    {
        uint count = 0;
        GpuException.Check(vk.EnumeratePhysicalDevices(instance, &count, null), "vkEnumeratePhysicalDevices");
        var devices = new PhysicalDevice[count];
        fixed (PhysicalDevice* p = devices) GpuException.Check(vk.EnumeratePhysicalDevices(instance, &count, p), "vkEnumeratePhysicalDevices");
        return devices.ToList();
    }

    static HashSet<string> InstanceLayers(Vk vk)
    {
        uint count = 0;
        vk.EnumerateInstanceLayerProperties(&count, null);
        var props = new LayerProperties[count];
        fixed (LayerProperties* p = props) vk.EnumerateInstanceLayerProperties(&count, p);
        return props.Select(l => SilkMarshal.PtrToString((nint)l.LayerName)!).ToHashSet();
    }

    static HashSet<string> InstanceExtensions(Vk vk)
    {
        uint count = 0;
        vk.EnumerateInstanceExtensionProperties((byte*)null, &count, null);
        var props = new ExtensionProperties[count];
        fixed (ExtensionProperties* p = props) vk.EnumerateInstanceExtensionProperties((byte*)null, &count, p);
        return props.Select(e => SilkMarshal.PtrToString((nint)e.ExtensionName)!).ToHashSet();
    }

    static HashSet<string> DeviceExtensions(Vk vk, PhysicalDevice pd)
    {
        uint count = 0;
        vk.EnumerateDeviceExtensionProperties(pd, (byte*)null, &count, null);
        var props = new ExtensionProperties[count];
        fixed (ExtensionProperties* p = props) vk.EnumerateDeviceExtensionProperties(pd, (byte*)null, &count, p);
        return props.Select(e => SilkMarshal.PtrToString((nint)e.ExtensionName)!).ToHashSet();
    }

    static uint ComputeQueueFamily(Vk vk, PhysicalDevice pd)
    {
        uint count = 0;
        vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, null);
        var families = new QueueFamilyProperties[count];
        fixed (QueueFamilyProperties* p = families) vk.GetPhysicalDeviceQueueFamilyProperties(pd, &count, p);
        // A compute queue that is also a graphics queue usually has timestamps and full speed;
        // a dedicated async-compute family is fine too, so take the first with compute.
        for (uint i = 0; i < count; i++)
            if (families[i].QueueFlags.HasFlag(QueueFlags.ComputeBit)) return i;
        throw new GpuException("the selected Vulkan device has no compute queue");
    }

    internal const string KhrMatMulShader = "matmul_coopmat_khr";
    internal const string Nv2MatMulShader = "matmul_coopmat_nv2";

    /// <summary>The matrix units a context creating its device for <paramref name="caps"/> uses;
    /// <paramref name="khrBuilt"/>, <paramref name="nv2Built"/>: whether the build compiled the KHR
    /// and the workgroup-scope kernel. The workgroup-scope one is only ever asked for
    /// (VKPROMPT_COOPMAT=nv2), never chosen.</summary>
    internal static MatrixUnits ChooseMatrixUnits(DeviceCapabilities caps, GpuOptions options, bool khrBuilt, bool nv2Built = false)
    {
        if (options.CooperativeMatrixEmulation)
            return caps.ShaderFloat16 && caps.StorageBuffer16Bit ? MatrixUnits.Emulated
                : throw new GpuException($"the emulated cooperative-matrix kernel needs fp16 arithmetic (shaderFloat16) and 16-bit storage buffers, which {caps.Name} lacks");
        if (!options.CooperativeMatrix) return MatrixUnits.None;
        bool khr = caps.CooperativeMatrixKhr && khrBuilt;
        return options.CooperativeMatrixExtension switch
        {
            MatrixUnitsExtension.Khr when khr => MatrixUnits.Khr,
            MatrixUnitsExtension.Khr => throw new GpuException(!khrBuilt
                ? "the matrix units were asked for through VK_KHR_cooperative_matrix, but this build has no matmul_coopmat_khr shader: its glslc could not compile " +
                  "GL_KHR_cooperative_matrix (Debian 12's glslang 11 cannot); tools/fetch-glslc.sh fetches one that can, and the next build uses it"
                : $"the matrix units were asked for through VK_KHR_cooperative_matrix, but {caps.Name} lacks it with 16x16x16 fp16·fp16+fp32 at subgroup scope (see vkprompt devices)"),
            MatrixUnitsExtension.Nv2 when khr && nv2Built && caps.CooperativeMatrix2Nv && Runtime.Kernels.CoopMatTiling.WorkgroupCandidates.Any(t => t.FitsWorkgroupScope(caps)) => MatrixUnits.Nv2,
            MatrixUnitsExtension.Nv2 => throw new GpuException(!khrBuilt || !nv2Built
                ? "the matrix units were asked for through VK_NV_cooperative_matrix2, but this build lacks the matmul_coopmat_khr or matmul_coopmat_nv2 shader: its glslc could not " +
                  "compile GL_KHR_cooperative_matrix or GL_NV_cooperative_matrix2 (glslang 15 can); tools/fetch-glslc.sh fetches one that can, and the next build uses it"
                : $"the matrix units were asked for through VK_NV_cooperative_matrix2, but {caps.Name} lacks it with workgroup scope, flexible dimensions, tensor addressing and " +
                  "fp16·fp16+fp32 at workgroup scope in blocks this build's tilings can use, beside VK_KHR_cooperative_matrix and Vulkan 1.3 (see vkprompt devices)"),
            MatrixUnitsExtension.Nv => caps.CooperativeMatrixNv ? MatrixUnits.Nv
                : throw new GpuException($"the matrix units were asked for through VK_NV_cooperative_matrix, but {caps.Name} lacks it with 16x16x16 fp16·fp16+fp32 at subgroup scope (see vkprompt devices)"),
            _ => khr ? MatrixUnits.Khr : caps.CooperativeMatrixNv ? MatrixUnits.Nv : MatrixUnits.None,
        };
    }

    static Device CreateDevice(Vk vk, PhysicalDevice pd, uint family, DeviceCapabilities caps, MatrixUnits units, bool pipelineStatistics)
    {
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
        var khrCoopmat = new PhysicalDeviceCooperativeMatrixFeaturesKHR
        {
            SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr, CooperativeMatrix = true,
            PNext = units == MatrixUnits.Nv2 ? &coopmat2 : &memoryModel,
        };
        bool cooperativeMatrix = units is MatrixUnits.Khr or MatrixUnits.Nv or MatrixUnits.Nv2;
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
        var names = new List<string>();
        if (cooperativeMatrix) names.Add(units == MatrixUnits.Nv ? DeviceCapabilities.NvCooperativeMatrixExtension : DeviceCapabilities.KhrCooperativeMatrixExtension);
        if (units == MatrixUnits.Nv2) names.Add(DeviceCapabilities.NvCooperativeMatrix2Extension);
        if (pipelineStatistics) names.Add(DeviceCapabilities.PipelineExecutablePropertiesExtension);
        var extensions = (byte**)SilkMarshal.StringArrayToPtr(names);
        try
        {
            var s16 = new PhysicalDevice16BitStorageFeatures
            {
                SType = StructureType.PhysicalDevice16BitStorageFeatures,
                StorageBuffer16BitAccess = caps.StorageBuffer16Bit,
                PNext = &f16,
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

    /// <summary>Returns the cached kernel for this shader and specialization, creating it once.</summary>
    public Kernel Kernel(string shader, KernelLayout layout, params int[] specialization)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var key = new KernelKey(shader, string.Join(',', specialization));
        if (!kernels.TryGetValue(key, out var k))
        {
            var sw = Stopwatch.StartNew();
            k = new Kernel(this, shader, layout, specialization);
            kernels[key] = k;
            PipelineCreationTime += sw.Elapsed;
        }
        else if (!k.Layout.Equals(layout))
            throw new InvalidOperationException($"kernel {shader} requested with two different layouts");
        return k;
    }

    /// <summary>Total time spent creating pipelines (shows the pipeline cache at work).</summary>
    public TimeSpan PipelineCreationTime { get; private set; }

    readonly record struct KernelKey(string Shader, string Specialization);

    /// <summary>Records commands with <paramref name="record"/>, submits them and waits.</summary>
    internal void SubmitAndWait(Action<CommandBuffer> record)
    {
        var cb = AllocateCommandBuffer();
        try
        {
            var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
            GpuException.Check(Vk.BeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer");
            record(cb);
            GpuException.Check(Vk.EndCommandBuffer(cb), "vkEndCommandBuffer");
            Submit(cb);
        }
        finally { FreeCommandBuffer(cb); }
    }

    internal CommandBuffer AllocateCommandBuffer()
    {
        var info = new CommandBufferAllocateInfo
        {
            SType = StructureType.CommandBufferAllocateInfo,
            CommandPool = commandPool,
            Level = CommandBufferLevel.Primary,
            CommandBufferCount = 1,
        };
        GpuException.Check(Vk.AllocateCommandBuffers(Device, &info, out var cb), "vkAllocateCommandBuffers");
        return cb;
    }

    internal void FreeCommandBuffer(CommandBuffer cb) => Vk.FreeCommandBuffers(Device, commandPool, 1, &cb);

    internal void Submit(CommandBuffer cb)
    {
        var submit = new SubmitInfo { SType = StructureType.SubmitInfo, CommandBufferCount = 1, PCommandBuffers = &cb };
        var f = fence;
        GpuException.Check(Vk.ResetFences(Device, 1, &f), "vkResetFences");
        GpuException.Check(Vk.QueueSubmit(Queue, 1, &submit, fence), "vkQueueSubmit");
        GpuException.Check(Vk.WaitForFences(Device, 1, &f, true, ulong.MaxValue), "vkWaitForFences");
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        Vk.DeviceWaitIdle(Device);
        foreach (var k in kernels.Values) k.Dispose();
        kernels.Clear();
        pipelineCache.Dispose();
        Memory.Dispose();
        Vk.DestroyFence(Device, fence, null);
        Vk.DestroyCommandPool(Device, commandPool, null);
        if (ownsDevice) Vk.DestroyDevice(Device, null);
        if (messenger.Handle != 0)
        {
            using var fnName = new ScopedUtf8("vkDestroyDebugUtilsMessengerEXT");
            var destroy = (delegate* unmanaged[Cdecl]<Instance, DebugUtilsMessengerEXT, AllocationCallbacks*, void>)Vk.GetInstanceProcAddr(Instance, fnName.Ptr).Handle;
            destroy(Instance, messenger, null);
        }
        if (ownsInstance) Vk.DestroyInstance(Instance, null);
        if (validationHandle.IsAllocated) validationHandle.Free();
    }

    internal readonly struct ScopedUtf8 : IDisposable
    {
        public readonly byte* Ptr;
        public ScopedUtf8(string s) => Ptr = (byte*)SilkMarshal.StringToPtr(s);
        public void Dispose() => SilkMarshal.Free((nint)Ptr);
    }
}
