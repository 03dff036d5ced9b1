using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Runtime.Reference;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>
/// A host application owns the instance and device (with a validation layer and a messenger of
/// its own) and lends them to VkPrompt. The layer reports a device destroyed while any of its
/// objects live, and any use of a destroyed handle, so zero errors over the whole lifetime shows
/// that the context released everything it made and destroyed nothing it was lent.
/// </summary>
public sealed class AdoptTests
{
    [Fact]
    public void RunsKernelsOnHostDeviceAndReleasesOnlyWhatItCreated()
    {
        const int n = 1000;
        var x = Check.Random(n, 1);
        var y = Check.Random(n, 2);
        float[] result;
        var host = new TestHost();
        try
        {
            using (var ctx = GpuContext.Adopt(host.Declared, new GpuOptions { PipelineCacheDirectory = null }))
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
            Assert.Equal(Result.Success, host.Vk.DeviceWaitIdle(host.Device));
        }
        finally { host.Dispose(); }
        AddReference.Forward(x, y, 2f);
        Check.Close(x, result, 1e-6, "add on an adopted device");
        Assert.True(host.Errors.IsEmpty, $"{host.Errors.Count} validation error(s):\n" + string.Join("\n", host.Errors));
    }
}
