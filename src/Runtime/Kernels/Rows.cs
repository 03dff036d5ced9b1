namespace VkPrompt.Runtime.Kernels;

/// <summary>Shape of the row kernels (shaders/include/reduce.glsl): one workgroup per row, its
/// invocations striding over the row's elements and meeting in a workgroup reduction; or, for the
/// softmax kernels' short rows, one subgroup per row (<see cref="SubgroupRows"/>).</summary>
static class Rows
{
    /// <summary>The workgroup size of a row kernel on this context (<see cref="DevicePlan.RowLocalSize"/>).</summary>
    public static int LocalSize(GpuContext context) => context.Plan.RowLocalSize;

    // Up to 16 elements of a row per invocation stay in registers between a row kernel's passes
    // (the CACHE constant of reduce.glsl's SHARE_LOOP): with 256 invocations, rows of up to 4096
    // elements; with 64, T5's 612-key attention rows. Past that, registers would crowd out the
    // workgroups that hide the passes' latency (and softmax_backward keeps a bit per element in
    // one uint).
    const int MaxCached = 16;

    /// <summary>CACHE for rows of <paramref name="length"/> over <paramref name="local"/>
    /// invocations: each one's share, or 0 (the row goes through memory) where that exceeds 16.</summary>
    public static int CachedPerInvocation(int length, int local)
    {
        int share = (length + local - 1) / local;
        return share <= MaxCached ? share : 0;
    }

    /// <summary>One workgroup per row up to the 65535 every device launches; the shaders' ROW_LOOP
    /// hands further rows to the same workgroups.</summary>
    public static (uint X, uint Y, uint Z) Groups(long rows) => ((uint)Math.Min(rows, 65535), 1, 1);

    /// <summary>The SUBGROUP_ROWS constant for rows of <paramref name="length"/> (<see cref="DevicePlan.SubgroupRowsFor"/>).</summary>
    public static int SubgroupRows(GpuContext context, int length) => context.Plan.SubgroupRowsFor(length);

    /// <summary>Everything a softmax kernel is specialized and dispatched with for
    /// <paramref name="rows"/> rows of <paramref name="length"/>: its workgroup size, CACHE,
    /// SUBGROUP_ROWS, and the workgroups (one per row, or per LocalSize / SUBGROUP_ROWS rows).</summary>
    public static (int Local, int Cache, int SubgroupRows, (uint X, uint Y, uint Z) Groups) Shape(GpuContext context, long rows, int length)
    {
        int local = LocalSize(context);
        int subgroup = SubgroupRows(context, length);
        if (subgroup == 0) return (local, CachedPerInvocation(length, local), 0, Groups(rows));
        int rowsPerGroup = Math.Max(1, local / subgroup);
        return (local, (length + subgroup - 1) / subgroup, subgroup, Groups((rows + rowsPerGroup - 1) / rowsPerGroup));
    }

    /// <summary>Zero rows is an empty op (nothing is dispatched); a row needs at least one element
    /// (an empty row has no maximum, no softmax, no norm).</summary>
    public static void CheckShape(string kernel, int rows, int cols, string colsName)
    {
        BufferChecks.NonNegative(kernel, (rows, nameof(rows)));
        if (cols <= 0) throw new ArgumentOutOfRangeException(colsName, cols, $"{kernel}: {colsName} must be positive");
    }
}
