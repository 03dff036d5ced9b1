using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>A Vulkan call failed or no usable device exists. The message is meant for the user.</summary>
public class GpuException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The work is too large for the device (its memory, or the size of one buffer), so
    /// smaller work (a smaller batch, shorter inputs) would run where this did not. Always true of
    /// a <see cref="DoesNotFitException"/>, which says by how much.</summary>
    public bool DoesNotFit { get; init; }

    internal static GpuException TooLarge(string message) => new(message) { DoesNotFit = true };

    internal static bool IsOutOfMemory(Result r) => r is Result.ErrorOutOfDeviceMemory or Result.ErrorOutOfHostMemory;

    internal static void Check(Result result, string what)
    {
        if (result != Result.Success)
            throw new GpuException($"{what} failed: {result}");
    }
}
