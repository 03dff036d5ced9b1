namespace VkPrompt.Runtime;

/// <summary>How a <see cref="GpuContext"/> is created. Every field has a default that reads the
/// documented environment variable, so a CLI flag and an environment variable behave alike.</summary>
public sealed record GpuOptions
{
    /// <summary>"auto" (discrete &gt; integrated &gt; virtual &gt; CPU), a device index, or a name substring.</summary>
    public string Device { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_DEVICE") is { Length: > 0 } d ? d : "auto";

    /// <summary>Enables VK_LAYER_KHRONOS_validation with synchronization validation.</summary>
    public bool Validation { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_VALIDATION") == "1";

    /// <summary>Records a timestamp around every dispatch (see <see cref="CommandGraph.Timings"/>).</summary>
    public bool Profiling { get; init; } = Environment.GetEnvironmentVariable("VKPROMPT_PROFILE") == "1";

    /// <summary>Directory for the on-disk pipeline cache; null disables persistence.</summary>
    public string? PipelineCacheDirectory { get; init; } = DefaultCacheDirectory();

    /// <summary>Pretends the device's maxStorageBufferRange is this small (tests of split tensors).</summary>
    public long? MaxStorageBufferRangeOverride { get; init; }

    /// <summary>Receives diagnostic lines (device choice, pipeline cache hits); null is silent.</summary>
    public Action<string>? Log { get; init; }

    static string? DefaultCacheDirectory()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var home = Environment.GetEnvironmentVariable("HOME");
        var root = !string.IsNullOrEmpty(xdg) ? xdg : !string.IsNullOrEmpty(home) ? Path.Combine(home, ".cache") : null;
        return root is null ? null : Path.Combine(root, "vkprompt");
    }
}
