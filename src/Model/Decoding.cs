using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

/// <summary>
/// Greedy decoding of one batch handed to the GPU without blocking: the encoder, the
/// cross-attention projections, then one decoder step per token. <see cref="Advance"/> submits
/// the next ops that fit a GPU-time budget and returns at once (a host calls it once per frame);
/// each token reaches <see cref="Outputs"/> as soon as its step's ticket completes, found by
/// <see cref="Poll"/> (which <see cref="Advance"/> calls first). A token's step waits for the
/// token before it, which the host reads, so while a step is in flight there is nothing more to
/// submit. The tokens are those of the blocking decode, which runs the same recordings.
/// </summary>
public sealed class Decoding : IDisposable
{
    readonly Generator generator;
    readonly bool ownsGenerator;
    readonly bool[] done;
    readonly int[] ids;
    int stage = -2;            // -2 encoder, -1 cross projections, t >= 0 the step yielding token t
    bool stageSubmitted;
    GpuTicket last;

    internal Decoding(Generator generator, int examples, bool ownsGenerator)
    {
        (this.generator, this.ownsGenerator) = (generator, ownsGenerator);
        Outputs = Enumerable.Range(0, examples).Select(_ => new List<int>()).ToArray();
        done = new bool[generator.BatchRows];
        for (int i = examples; i < done.Length; i++) done[i] = true;
        ids = Enumerable.Repeat(generator.StartTokenId, generator.BatchRows).ToArray();
    }

    /// <summary>Each example's tokens so far (ids, without the start token and eos).</summary>
    internal List<int>[] Outputs { get; }

    /// <summary>Each example's generated ids so far, without the start token and eos; they grow
    /// as steps complete (<see cref="Poll"/>).</summary>
    public IReadOnlyList<IReadOnlyList<int>> Tokens => Outputs;

    /// <summary>Whether any op has been submitted.</summary>
    internal bool IsStarted { get; private set; }

    /// <summary>Whether every example has reached eos or the token limit.</summary>
    public bool IsComplete { get; private set; }

    /// <summary>The ticket of the last submit.</summary>
    public GpuTicket Ticket => last;

    /// <summary>Takes in the token of a step whose ticket completed, and moves past passes that
    /// need no host work in between; returns whether new tokens arrived. Never blocks.</summary>
    public bool Poll()
    {
        bool tokens = false;
        while (!IsComplete && stageSubmitted)
        {
            if (stage < 0)
            {
                // The encoder and the projections hand nothing to the host: the next pass may
                // follow them on the queue at once (each submit begins with a full barrier).
                stage++;
                stageSubmitted = false;
                break;
            }
            if (!last.IsComplete) break;
            var next = generator.NextIds();
            for (int i = 0; i < ids.Length; i++)
            {
                ids[i] = next[i];
                if (done[i]) continue;
                if (ids[i] == generator.EosTokenId) done[i] = true;
                else Outputs[i].Add(ids[i]);
            }
            tokens = true;
            stage++;
            stageSubmitted = false;
            if (stage == generator.MaxNewTokens || !done.Contains(false)) IsComplete = true;
        }
        return tokens;
    }

    /// <summary>Submits the next ops of the current pass whose estimated GPU time fits
    /// <paramref name="budget"/> (as <see cref="Submission.Advance"/>), after
    /// <paramref name="waits"/>, and returns at once; null where nothing can be submitted now
    /// (a token's step is in flight, or the decoding is complete).</summary>
    public SliceReport? Advance(TimeSpan budget, params GpuWait[] waits)
    {
        Poll();
        if (IsComplete || stageSubmitted) return null;
        var report = Current().Advance(budget, waits);
        Record(report.Ticket, report.Submitted);
        return report;
    }

    /// <summary>Runs the decoding to its end, blocking the calling thread.</summary>
    public void Wait()
    {
        while (!IsComplete)
        {
            if (!stageSubmitted) Record(Current().Submit([]), submitted: true);
            else last.Wait();
            Poll();
        }
    }

    IRecording Current()
    {
        var recording = generator.Stage(stage);
        if (stage >= 0 && !IsPassOpen) generator.SetCurrentIds(ids);
        return recording;
    }

    // Ids are laid once per step, before its first slice; later slices of the same step find
    // the pass open.
    bool IsPassOpen => passOpenFor == stage;
    int passOpenFor = int.MinValue;

    void Record(GpuTicket ticket, bool submitted)
    {
        IsStarted = true;
        passOpenFor = stage;
        last = ticket;
        stageSubmitted = submitted;
    }

    /// <summary>Frees the generator where this decoding owns it, after its own work completes.</summary>
    public void Dispose()
    {
        if (ownsGenerator) generator.Dispose();
    }
}
