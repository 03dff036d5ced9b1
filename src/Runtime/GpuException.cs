using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>A Vulkan call failed or no usable device exists. The message is meant for the user.</summary>
public sealed class GpuException(string message) : Exception(message)
{
    internal static void Check(Result result, string what)
    {
        if (result != Result.Success)
            throw new GpuException($"{what} failed: {result}");
    }
}
