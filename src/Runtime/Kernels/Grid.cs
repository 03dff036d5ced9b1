namespace VkPrompt.Runtime.Kernels;

/// <summary>Workgroup counts for the dispatch shapes the kernels use.</summary>
internal static class Grid
{
    /// <summary>Workgroup size for 1-D elementwise kernels. 256 suits every desktop vendor; a
    /// per-device choice goes through the specialization constant if one ever needs it.</summary>
    public const int LinearSize = 256;

    /// <summary>Enough groups to cover n items once, capped at the 65535 every device supports;
    /// kernels loop grid-stride over the rest (common.glsl GRID_STRIDE_LOOP).</summary>
    public static (uint X, uint Y, uint Z) Linear(long n, int local = LinearSize) =>
        ((uint)Math.Clamp((n + local - 1) / local, 1, 65535), 1, 1);

    public static uint Div(long n, int d) => (uint)((n + d - 1) / d);
}
