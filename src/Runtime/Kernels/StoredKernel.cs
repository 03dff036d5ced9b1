namespace VkPrompt.Runtime.Kernels;

/// <summary>
/// A kernel some of whose bindings may hold 16-bit activations, built twice from one body
/// (shaders/include/stored_buffer.glsl says why): NAME, fp32 only, which a device without 16-bit
/// storage can load, and NAME_half, which declares those bindings as 16-bit too. Each stored
/// binding's storage is a specialization constant, following the kernel's own constants in the
/// order the buffers are given; the 16-bit build is chosen only when one of them is 16-bit, so an
/// fp32 run never loads it.
/// </summary>
/// <param name="name">The shader (NAME.comp, with NAME_half.comp beside it).</param>
/// <param name="layout">Its bindings and push constants, without <see cref="KernelLayout.HalfBindings"/>.</param>
/// <param name="halfBindings">The bindings the 16-bit build lets hold 16-bit buffers
/// (<see cref="KernelLayout.HalfBindings"/>).</param>
internal sealed class StoredKernel(string name, KernelLayout layout, uint halfBindings)
{
    readonly KernelLayout halfLayout = layout with { HalfBindings = halfBindings };

    /// <summary>The build and specialization for these buffers: <paramref name="constants"/>
    /// (constant_id 0 up), then the shader code of each <paramref name="stored"/> buffer's
    /// storage (<see cref="ActivationPrecisions.ShaderCode"/>).</summary>
    public Kernel For(GpuContext ctx, int[] constants, params GpuBuffer[] stored)
    {
        bool half = stored.Any(b => b.Storage != ActivationPrecision.Fp32);
        int[] specialization = [.. constants, .. stored.Select(b => b.Storage.ShaderCode())];
        return half ? ctx.Kernel(name + "_half", halfLayout, specialization) : ctx.Kernel(name, layout, specialization);
    }
}
