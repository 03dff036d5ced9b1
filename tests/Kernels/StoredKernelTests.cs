using System.Runtime.InteropServices;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>The two builds of each kernel whose bindings may hold 16-bit activations
/// (shaders/include/stored_buffer.glsl): a device without 16-bit storage can create pipelines
/// only from modules that do not require StorageBuffer16BitAccess, so the fp32 build must not
/// declare it, and the 16-bit build must (or it could not declare its uint16_t views).</summary>
public sealed class StoredKernelTests
{
    const uint OpCapability = 17, CapabilityStorageBuffer16BitAccess = 4433;

    [Theory]
    [InlineData("rmsnorm")]
    [InlineData("gated_activation")]
    [InlineData("gated_activation_backward")]
    [InlineData("relu")]
    [InlineData("relu_backward")]
    public void OnlyThe16BitBuildNeeds16BitStorage(string shader)
    {
        Assert.False(Requires16BitStorage(shader), $"{shader} requires 16-bit storage");
        Assert.True(Requires16BitStorage(shader + "_half"), $"{shader}_half does not declare 16-bit storage");
    }

    static bool Requires16BitStorage(string shader)
    {
        using var s = typeof(Kernel).Assembly.GetManifestResourceStream(shader + ".spv");
        Assert.NotNull(s);
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        var words = MemoryMarshal.Cast<byte, uint>(bytes);
        Assert.Equal(0x07230203u, words[0]);
        for (int at = 5; at < words.Length; at += (int)(words[at] >> 16))
            if ((words[at] & 0xffff) == OpCapability && words[at + 1] == CapabilityStorageBuffer16BitAccess) return true;
        return false;
    }
}
