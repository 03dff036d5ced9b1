using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>
/// A VkPipelineCache persisted on disk so the second start of a process skips shader compilation
/// in the driver. The file name carries the device's pipelineCacheUUID and driver version, so a
/// driver update or another GPU never reads a stale cache. Writes go to a temp file then rename,
/// so two processes never leave a torn file. On an adopted device whose host lends its own cache
/// (<see cref="HostDevice.PipelineCache"/>) that cache is used as it is: the host made it and
/// persists it, so it is neither created, written to disk nor destroyed here.
/// </summary>
internal sealed unsafe class PipelineCacheStore : IDisposable
{
    readonly GpuContext ctx;
    readonly string? path;
    readonly bool ownsCache;
    public PipelineCache Handle { get; }

    /// <param name="ctx">the context whose pipelines go through the cache</param>
    /// <param name="hostCache">the host's cache (<see cref="HostDevice.PipelineCache"/>), or a null handle</param>
    public PipelineCacheStore(GpuContext ctx, PipelineCache hostCache = default)
    {
        this.ctx = ctx;
        if (hostCache.Handle != 0)
        {
            Handle = hostCache;
            ctx.Options.Log?.Invoke("pipeline cache: the host's");
            return;
        }
        ownsCache = true;
        var dir = ctx.Options.PipelineCacheDirectory;
        path = dir is null ? null : Path.Combine(dir, $"pipelines-{ctx.Capabilities.PipelineCacheKey}.bin");
        byte[] initial = [];
        if (path is not null && File.Exists(path))
        {
            try { initial = File.ReadAllBytes(path); }
            catch (IOException) { initial = []; }
            ctx.Options.Log?.Invoke($"pipeline cache: loaded {initial.Length} bytes from {path}");
        }
        else if (path is not null)
            ctx.Options.Log?.Invoke($"pipeline cache: none yet at {path}");

        fixed (byte* data = initial)
        {
            var info = new PipelineCacheCreateInfo
            {
                SType = StructureType.PipelineCacheCreateInfo,
                InitialDataSize = (nuint)initial.Length,
                PInitialData = initial.Length > 0 ? data : null,
            };
            // A corrupt or foreign file is not an error: Vulkan validates the header and we start empty.
            if (ctx.Vk.CreatePipelineCache(ctx.Device, &info, null, out var cache) != Result.Success)
            {
                info.InitialDataSize = 0;
                info.PInitialData = null;
                GpuException.Check(ctx.Vk.CreatePipelineCache(ctx.Device, &info, null, out cache), "vkCreatePipelineCache");
            }
            Handle = cache;
        }
    }

    void Save()
    {
        if (path is null) return;
        nuint size = 0;
        if (ctx.Vk.GetPipelineCacheData(ctx.Device, Handle, &size, null) != Result.Success || size == 0) return;
        var data = new byte[size];
        fixed (byte* p = data)
            if (ctx.Vk.GetPipelineCacheData(ctx.Device, Handle, &size, p) != Result.Success) return;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            // Each rename is atomic, and two processes saving at once write apart: by process id, not configuration.
            var tmp = $"{path}.{Environment.ProcessId}.tmp";
            File.WriteAllBytes(tmp, data.AsSpan(0, (int)size).ToArray());
            File.Move(tmp, path, overwrite: true);
            ctx.Options.Log?.Invoke($"pipeline cache: saved {size} bytes to {path}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ctx.Options.Log?.Invoke($"pipeline cache: could not save to {path}: {e.Message}");
        }
    }

    public void Dispose()
    {
        if (!ownsCache) return;
        Save();
        ctx.Vk.DestroyPipelineCache(ctx.Device, Handle, null);
    }
}
