using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

/// <summary>
/// One run of a recorded pass (a training step, a scoring batch), handed to the GPU without
/// blocking: <see cref="Submit"/> queues all of it, <see cref="Advance"/> the next ops that fit a
/// GPU-time budget (a host calls it once per frame), and each returns a <see cref="GpuTicket"/> at
/// once. The results are read once <see cref="IsComplete"/>; on the CPU backend a submit computes
/// the whole pass before it returns.
/// </summary>
public abstract class Submission
{
    private protected IRecording Recording { get; }

    private protected Submission(IRecording recording) => Recording = recording;

    /// <summary>Whether any op of the pass has been submitted.</summary>
    internal bool IsStarted { get; private set; }

    /// <summary>Whether every op of the pass has been submitted.</summary>
    public bool IsSubmitted { get; private set; }

    /// <summary>The ticket of the last submit of this pass (complete before the first).</summary>
    public GpuTicket Ticket { get; private set; }

    /// <summary>Whether the whole pass has run: submitted, and its last ticket complete. Never blocks.</summary>
    public bool IsComplete => IsSubmitted && Ticket.IsComplete;

    /// <summary>Submits every op not yet submitted, after <paramref name="waits"/> (the host's
    /// timeline values), and returns at once with the ticket of the pass's completion.</summary>
    public GpuTicket Submit(params GpuWait[] waits)
    {
        RequireUnsubmitted();
        Ticket = Recording.Submit(waits);
        IsStarted = IsSubmitted = true;
        return Ticket;
    }

    /// <summary>Submits the next ops whose GPU time, estimated from earlier runs of the same pass,
    /// fits <paramref name="budget"/> (an op never measured, or longer than the budget, goes alone,
    /// and the report says which), after <paramref name="waits"/>, and returns at once. The
    /// results are bit for bit those of one <see cref="Submit"/>.</summary>
    public SliceReport Advance(TimeSpan budget, params GpuWait[] waits)
    {
        RequireUnsubmitted();
        var report = Recording.Advance(budget, waits);
        Ticket = report.Ticket;
        IsStarted = true;
        IsSubmitted = report.Submitted;
        return report;
    }

    /// <summary>Submits whatever is left and blocks the calling thread until the pass is complete.</summary>
    public void Wait()
    {
        if (!IsSubmitted) Submit();
        Ticket.Wait();
    }

    /// <summary>The measured GPU time of each slice this pass ran in, once it is complete (for a
    /// pass submitted whole, where the device profiles).</summary>
    public IReadOnlyList<SliceTiming> SliceTimings
    {
        get
        {
            RequireComplete("slice timings");
            return Recording.SliceTimings;
        }
    }

    void RequireUnsubmitted()
    {
        if (IsSubmitted) throw new InvalidOperationException("this pass is already wholly submitted; wait for its ticket and read its results");
    }

    /// <summary>Throws unless the pass is complete: its results are not there before.</summary>
    private protected void RequireComplete(string what)
    {
        if (!IsComplete)
            throw new InvalidOperationException(IsSubmitted
                ? $"{what} can be read once the pass's ticket completes (poll IsComplete, or Wait)"
                : $"{what} can be read once the pass is submitted and its ticket completes");
    }
}
