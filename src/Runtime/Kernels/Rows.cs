namespace VkPrompt.Runtime.Kernels;

/// <summary>Shape of the row kernels (shaders/include/reduce.glsl): one workgroup per row, its
/// invocations striding over the row's elements and meeting in a workgroup reduction; or, for the
/// softmax kernels' short rows, one subgroup per row (<see cref="SubgroupRows"/>).</summary>
static class Rows
{
    /// <summary><see cref="GpuOptions.RowLocalSize"/> where set, else eight subgroups per
    /// workgroup: enough invocations for rows of a few hundred elements, and few enough partials
    /// that subgroup 0 folds them in one step. Capped at 256, which every device runs and which
    /// keeps several rows in flight per compute unit.</summary>
    /// <exception cref="GpuException">The size set is no multiple of the subgroup size or more
    /// than the device runs.</exception>
    public static int LocalSize(GpuContext context)
    {
        var caps = context.Capabilities;
        if (context.Options.RowLocalSize is not { } set) return (int)Math.Clamp(8 * caps.SubgroupSize, 32, 256);
        if (set <= 0 || set % caps.SubgroupSize != 0 || set > caps.MaxComputeWorkGroupInvocations)
            throw new GpuException($"VKPROMPT_ROW_LOCAL_SIZE={set}: needs a multiple of the subgroup size ({caps.SubgroupSize}) of at most {caps.MaxComputeWorkGroupInvocations}");
        return set;
    }

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

    // A subgroup's row keeps at most 32 elements an invocation in registers (softmax_backward's
    // keep bits fill one uint): T5's 612-key rows over NVIDIA's 32 lanes take 20.
    const int MaxCachedPerSubgroupRow = 32;

    /// <summary>The SUBGROUP_ROWS constant of the kernels that may give a row a subgroup
    /// (shaders/include/reduce.glsl): the device's subgroup size where
    /// <see cref="GpuOptions.SubgroupRows"/> allows and a subgroup keeps a row of
    /// <paramref name="length"/> in registers, else 0 (a workgroup per row).</summary>
    public static int SubgroupRows(GpuContext context, int length)
    {
        if (context.Options.SubgroupRowsOverride is { } forced) return forced;
        int size = (int)context.Capabilities.SubgroupSize;
        return context.Options.SubgroupRows && size >= 4 && length <= MaxCachedPerSubgroupRow * size ? size : 0;
    }

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
