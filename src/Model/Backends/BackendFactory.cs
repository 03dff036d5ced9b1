using VkPrompt.Runtime;

namespace VkPrompt.Model.Backends;

public static class BackendFactory
{
    /// <summary>"cpu" gives the CPU reference backend; anything else is a Vulkan device spec
    /// (auto, an index or a name substring) for a context the backend owns.</summary>
    public static Backend Open(string device, Action<string>? log = null) =>
        device.Equals("cpu", StringComparison.OrdinalIgnoreCase)
            ? new CpuBackend()
            : new GpuBackend(GpuContext.Create(new GpuOptions { Device = device, Log = log }), ownsContext: true);
}
