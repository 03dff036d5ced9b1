using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>
/// A Vulkan device a host created and lends to VkPrompt (<see cref="GpuContext.Adopt(HostDevice, GpuOptions?)"/>),
/// declared the way the host made it: Vulkan cannot report what a host enabled, so the host says,
/// and the context uses what is declared and nothing more (IREE's and Unity's way of sharing a
/// device). The host keeps ownership of every handle and destroys them after the context.
/// </summary>
public sealed record HostDevice
{
    /// <summary>The host's loader entry, vkGetInstanceProcAddr (PFN_vkGetInstanceProcAddr); every
    /// Vulkan function the context calls is resolved through it, so a host with its own loader or
    /// layers is called through them. 0: the system loader (libvulkan).</summary>
    public nint GetInstanceProcAddr { get; init; }

    /// <summary>The host's instance.</summary>
    public required Instance Instance { get; init; }

    /// <summary>The physical device <see cref="Device"/> was made on.</summary>
    public required PhysicalDevice PhysicalDevice { get; init; }

    /// <summary>The host's logical device.</summary>
    public required Device Device { get; init; }

    /// <summary>The API version the host created the instance with (VK_MAKE_API_VERSION); VkPrompt
    /// needs 1.2 or later.</summary>
    public required uint ApiVersion { get; init; }

    /// <summary>The queue family of the queue to submit to; it must support compute.</summary>
    public required uint QueueFamily { get; init; }

    /// <summary>The index of the queue within <see cref="QueueFamily"/> (vkGetDeviceQueue's).</summary>
    public uint QueueIndex { get; init; }

    /// <summary>The device extensions the host enabled (VkDeviceCreateInfo::ppEnabledExtensionNames).</summary>
    public IReadOnlyCollection<string> EnabledExtensions { get; init; } = [];

    /// <summary>The device features the host enabled (its VkDeviceCreateInfo feature chain).</summary>
    public HostFeatures EnabledFeatures { get; init; } = new();

    /// <summary>The host's pipeline cache, which the context's pipelines are created through;
    /// a null handle: none (unless <see cref="GpuOptions.PipelineCacheDirectory"/> names one).</summary>
    public PipelineCache PipelineCache { get; init; }

    /// <summary>Called around every vkQueueSubmit of the context, where the host shares the queue
    /// with its own threads (Vulkan requires submits to one queue to be externally
    /// synchronised); null: the host does not submit to this queue while the context works.</summary>
    public QueueLock? QueueLock { get; init; }
}

/// <summary>The host's lock on a shared queue: <paramref name="Acquire"/> is called right before
/// each vkQueueSubmit of the context and <paramref name="Release"/> right after it (also when it
/// fails), on the thread that submits.</summary>
/// <param name="Acquire">Takes the host's queue lock (blocks until it is free).</param>
/// <param name="Release">Releases it.</param>
public sealed record QueueLock(Action Acquire, Action Release);

/// <summary>The device features a host enabled that VkPrompt may use (a subset of its
/// VkDeviceCreateInfo feature chain).</summary>
public sealed record HostFeatures
{
    /// <summary>VkPhysicalDeviceVulkan12Features::timelineSemaphore (or the 1.2 core
    /// VkPhysicalDeviceTimelineSemaphoreFeatures): required, tickets are timeline values.</summary>
    public bool TimelineSemaphore { get; init; }

    /// <summary>storageBuffer16BitAccess: required for fp16/bf16 weights.</summary>
    public bool StorageBuffer16BitAccess { get; init; }
}
