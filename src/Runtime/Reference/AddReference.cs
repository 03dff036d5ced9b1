using System.Numerics.Tensors;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="Kernels.AddKernel"/>.</summary>
internal static class AddReference
{
    public static void Forward(Span<float> x, ReadOnlySpan<float> y, float alpha = 1f) =>
        TensorPrimitives.MultiplyAdd(y, alpha, x, x);
}
