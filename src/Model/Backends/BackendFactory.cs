using VkPrompt.Runtime;

namespace VkPrompt.Model.Backends;

internal static class BackendFactory
{
    /// <summary>"cpu" gives the CPU reference backend; anything else is a Vulkan device spec
    /// (auto, an index or a name substring) for a context the backend owns, created with
    /// <paramref name="options"/> (null: the defaults) on that device.</summary>
    public static Backend Open(string device, GpuOptions? options = null) =>
        device.Equals("cpu", StringComparison.OrdinalIgnoreCase)
            ? new CpuBackend()
            : new GpuBackend(GpuContext.Create((options ?? new GpuOptions()) with { Device = device }), ownsContext: true);
}
