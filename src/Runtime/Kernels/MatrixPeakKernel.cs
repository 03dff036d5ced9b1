namespace VkPrompt.Runtime.Kernels;

/// <summary>matrix_peak.comp: the rate the context's cooperative-matrix build reaches on 16x16x16
/// fp16 products with fp32 sums, operands in shared memory, no global traffic but the results:
/// the ceiling the matrix-unit product (<see cref="MatMulKernel"/>) is measured against.</summary>
internal static class MatrixPeakKernel
{
    static readonly KernelLayout Layout = new([Access.Write], 12);

    readonly record struct Push(uint Iterations, float A, float B);

    /// <summary>Subgroups per workgroup and 16x16 accumulators per subgroup: the matrix-unit
    /// product's default (<see cref="MatrixUnitsTiling.Default"/> has 2 x 4 per subgroup).</summary>
    public const int Warps = 4, TilesM = 2, TilesN = 4;

    /// <summary>The floats <see cref="Run"/> writes for <paramref name="workgroups"/>.</summary>
    public static long Outputs(int workgroups) => (long)workgroups * Warps * TilesM * TilesN * 256;

    /// <summary>FLOPs of one <see cref="Run"/>, counting a multiply-add as two.</summary>
    public static double Flops(int workgroups, int iterations) => 2.0 * 16 * 16 * 16 * TilesM * TilesN * Warps * workgroups * (double)iterations;

    /// <summary>Appends <paramref name="workgroups"/> workgroups that each multiply for
    /// <paramref name="iterations"/> iterations, with the fragments reloaded from shared memory
    /// every iteration where <paramref name="reload"/>, and store every accumulator to
    /// <paramref name="c"/>: each element iterations · 16 · fp16(a) · fp16(b).</summary>
    public static void Run(CommandGraph g, GpuBuffer c, int workgroups, int iterations, bool reload, float a, float b)
    {
        var ctx = g.Context;
        if (!ctx.UsesMatrixUnits) throw new GpuException("the matrix-unit peak needs a context that uses the matrix units (GpuContext.UsesMatrixUnits)");
        BufferChecks.Require("matrix_peak", c, Outputs(workgroups), "c");
        uint subgroup = ctx.Plan.MatrixUnitsSubgroupSize;
        var k = ctx.MatrixUnitsKernel(MatMulKernel.MatrixUnitsShader(ctx, "matrix_peak"), Layout, (int)subgroup * Warps, (int)subgroup, Warps, TilesM, TilesN, reload ? 1 : 0);
        g.Dispatch(k, ((uint)workgroups, 1u, 1u), new Push((uint)iterations, a, b), c);
    }
}
