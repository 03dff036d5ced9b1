namespace VkPrompt.Runtime;

/// <summary>The shape (M x N x K) of the matrix units' own fragments from which the KHR kernels
/// compose every 16x16x16 product they multiply (include/coopmat.glsl): 16x16x16 itself where the
/// device lists it (NVIDIA's drivers do), else a listed shape with sides of 8 or 16 (Mesa 26.1's
/// lavapipe lists 8x8x8 only), so devices listing only smaller shapes run the same kernels. The
/// kernels receive it as specialization constants <see cref="SpecializationIds"/>.</summary>
public readonly record struct MatrixFragment(uint M, uint N, uint K)
{
    /// <summary>16x16x16: each matrix of the kernels is one of the units' fragments.</summary>
    public static readonly MatrixFragment Whole = new(16, 16, 16);

    /// <summary>The constant_ids of CM_M, CM_N and CM_K in include/coopmat.glsl.</summary>
    internal static readonly uint[] SpecializationIds = [20, 21, 22];

    /// <summary>The kernels compose their 16x16 matrices of several of the units' fragments.</summary>
    public bool Composed => this != Whole;

    /// <summary>"16x16x16", or "16x16x16 of 8x8x8" where composed.</summary>
    public override string ToString() => Composed ? $"16x16x16 of {M}x{N}x{K}" : "16x16x16";

    /// <summary>The shape to compose of among <paramref name="listed"/> (subgroup-scope shapes of
    /// the fragments' types): 16x16x16 where listed, else the one of most products per fragment
    /// (then the largest accumulator) whose sides are 8 or 16, because the kernels' composites hold
    /// at most two fragments along each side (their arrays are sized for that); null where none fits.</summary>
    public static MatrixFragment? Choose(IEnumerable<MatrixFragment> listed)
    {
        static bool Fits(uint side) => side is 8 or 16;
        var usable = listed.Where(s => Fits(s.M) && Fits(s.N) && Fits(s.K)).ToList();
        if (usable.Contains(Whole)) return Whole;
        return usable.Count == 0 ? null
            : usable.OrderByDescending(s => s.M * s.N * s.K).ThenByDescending(s => s.M * s.N).First();
    }
}
