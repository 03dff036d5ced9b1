namespace VkPrompt.Runtime;

/// <summary>What one slice of a recorded pass submitted (<c>Advance</c>).</summary>
/// <param name="Ticket">Completes when the slice's ops (and everything submitted before) are done.</param>
/// <param name="FirstOp">The index of the slice's first op in the pass.</param>
/// <param name="Ops">How many ops the slice submitted.</param>
/// <param name="OpsLeft">Ops of the pass still to submit; 0 once the whole pass is submitted.</param>
/// <param name="EstimatedMs">The GPU time the slice was cut by, from earlier runs' timestamps;
/// null where its op was never measured (it then went alone, the safe default).</param>
/// <param name="OverBudgetOp">The op ("phase/kernel") that alone takes longer than the budget and
/// so made a slice of its own; null where the slice fits.</param>
public sealed record SliceReport(GpuTicket Ticket, int FirstOp, int Ops, int OpsLeft, double? EstimatedMs, string? OverBudgetOp)
{
    /// <summary>Whether this slice submitted the last ops of the pass.</summary>
    public bool Submitted => OpsLeft == 0;
}

/// <summary>The measured GPU time of one slice of a completed run, from the timestamps around its
/// first and last op.</summary>
/// <param name="FirstOp">The index of the slice's first op.</param>
/// <param name="Ops">How many ops it held.</param>
/// <param name="GpuMs">From the start of its first op to the end of its last.</param>
/// <param name="EstimatedMs">What it was estimated at when cut (null: never measured before).</param>
/// <param name="LongestOpMs">Its longest op's time.</param>
public readonly record struct SliceTiming(int FirstOp, int Ops, double GpuMs, double? EstimatedMs, double LongestOpMs);
