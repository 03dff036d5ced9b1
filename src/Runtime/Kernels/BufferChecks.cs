namespace VkPrompt.Runtime.Kernels;

/// <summary>Size checks made when an op is appended: a shader that indexes past the end of a
/// buffer gets no error on most devices (robustBufferAccess is off), it silently reads or
/// corrupts whatever memory follows.</summary>
static class BufferChecks
{
    /// <summary>Requires room for <paramref name="elements"/> elements of the buffer's
    /// <see cref="GpuBuffer.Storage"/> (32-bit unless it holds 16-bit activations).</summary>
    public static void Require(string kernel, GpuBuffer buffer, long elements, string what)
    {
        long bytes = elements * buffer.Storage.ElementBytes();
        if (bytes > buffer.Bytes)
            throw new ArgumentException($"{kernel}: {what} needs {elements} elements ({bytes} bytes), buffer {buffer.Name} has {buffer.Bytes} bytes");
    }

    public static void NonNegative(string kernel, params ReadOnlySpan<(int Value, string Name)> sizes)
    {
        foreach (var (value, name) in sizes)
            if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{kernel}: {name} must not be negative");
    }
}
