using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

/// <summary>
/// The forward (and prompt-only backward) of one batch shape on a <see cref="ModelPipeline"/>. The
/// batch is cut into micro-batches of consecutive rows, as even as they come (their sizes differ
/// by one at most; each is padded to the largest, so every stage replays one recording shape);
/// every stage keeps one <see cref="T5Pass"/> of its layers per micro-batch, recorded once and
/// replayed while batches keep the shape, and the passes of a stage share their scratch
/// (<see cref="PassScratch"/>). Stage s works on micro-batch m while stage s+1 works on
/// m-1: each stage's queue takes its forwards in order and then its backwards (the last stage
/// runs each micro-batch's backward right after its forward), and the host submits a stage's
/// next pass as soon as what it needs has crossed, without waiting for anything else. Activations
/// and their gradients cross through host-visible tensors (<see cref="StageCrossing"/>): downloaded
/// from the stage that made them and uploaded into the one that needs them.
/// The prompt gradient is each micro-batch's (whose loss is the mean over its own target tokens)
/// weighted by its share of the batch's target tokens, summed in micro-batch order: the gradient
/// of the mean over the whole batch.
/// </summary>
internal sealed class PipelineStep : IDisposable
{
    readonly (T5Pass Pass, IRecording Forward, IRecording? Backward)[][] work;   // [stage][micro-batch]
    readonly PassScratch[] scratch;   // [stage]
    readonly int[] rows;   // real rows of each micro-batch
    float[] transfer = [];

    /// <summary>The whole batch's shape.</summary>
    public BatchShape Shape { get; }
    /// <summary>Each micro-batch's shape.</summary>
    public BatchShape MicroShape { get; }
    int Stages => work.Length;
    int MicroBatches => rows.Length;

    /// <param name="pipeline">the stages.</param>
    /// <param name="shape">the whole batch's shape.</param>
    /// <param name="mode">what the passes keep for a backward (<see cref="ActivationMode.Inference"/>: none).</param>
    /// <param name="prompt">the prompts, on the first stage's backend.</param>
    /// <param name="dropoutRate">the training dropout rate.</param>
    public PipelineStep(ModelPipeline pipeline, BatchShape shape, ActivationMode mode, Tensor? prompt, float dropoutRate)
    {
        Shape = shape;
        int m = Math.Min(pipeline.MicroBatches, shape.Batch);
        rows = Enumerable.Range(0, m).Select(i => HostBatch.Share(shape.Batch, m, i).Count).ToArray();
        MicroShape = shape with { Batch = rows[0] };
        var built = new List<(PassScratch Scratch, (T5Pass, IRecording, IRecording?)[] Passes)>();
        int last = pipeline.Stages.Count - 1;
        try
        {
            for (int s = 0; s <= last; s++)
            {
                var w = pipeline.Stages[s];
                var be = w.Backend;
                if (be.TunesMatMul) be.TuneMatMul(T5Pass.Trace(w.Config, MicroShape, mode, dropoutRate, w.Precision, be.FusesAttention, w.Layers, be.Activations));
                var stagePrompt = s == 0 ? prompt : null;
                // The last stage runs each micro-batch's backward right after its forward (Schedule),
                // and a forward alone keeps nothing: there the passes share what a forward keeps too.
                bool sharesKept = mode == ActivationMode.Inference || s == last;
                built.Add(WorkMemory.Build(w, $"stage {s} ({w.Layers}) of {m} micro-batches of {MicroShape}", sw =>
                {
                    var shared = new PassScratch(sw.Backend, sharesKept);
                    return (shared, Enumerable.Range(0, m).Select(_ =>
                    {
                        var pass = new T5Pass(sw, MicroShape, mode, stagePrompt, dropoutRate, shared);
                        return (pass, sw.Backend.Record(pass.EmitForward), mode == ActivationMode.Inference ? null : sw.Backend.Record(pass.EmitBackward));
                    }).ToArray());
                }));
            }
        }
        catch
        {
            foreach (var stage in built) Dispose(stage.Scratch, stage.Passes);
            throw;
        }
        work = built.Select(b => b.Passes).ToArray();
        scratch = built.Select(b => b.Scratch).ToArray();
    }

    /// <summary>Runs <paramref name="host"/> (of <see cref="Shape"/>) through the stages, blocking
    /// until the last stage is done.</summary>
    /// <param name="host">the batch.</param>
    /// <param name="backward">whether to run the backward too.</param>
    /// <param name="dropoutSeed">each micro-batch's dropout seed, where the passes drop out.</param>
    /// <returns>the per-token log-probabilities of the batch, [batch x target length] as one
    /// pass gives them, and (with the backward) the prompt gradient of the mean token loss over
    /// the whole batch.</returns>
    public (float[] LogProbs, float[]? PromptGradient) Run(HostBatch host, bool backward, Func<int, int>? dropoutSeed = null)
    {
        if (host.Shape != Shape) throw new ArgumentException($"batch shape {host.Shape} does not match the pipeline step's {Shape}");
        var micro = new HostBatch[MicroBatches];
        var active = new List<int>();
        for (int m = 0, row = 0; m < MicroBatches; row += rows[m], m++)
        {
            micro[m] = host.Rows(row, rows[m], MicroShape.Batch);
            // A micro-batch of padding rows alone has no loss, and its mean would divide by zero.
            if (micro[m].TargetTokens > 0) active.Add(m);
        }
        foreach (int m in active)
            foreach (var stage in work)
            {
                var pass = stage[m].Pass;
                pass.Load(micro[m]);
                if (pass.DropoutSeed is not null) Backend(stage).Upload(pass.DropoutSeed, [dropoutSeed!(m)]);
            }
        Schedule(active, backward);

        int ld = Shape.TargetLength;
        var logProbs = new float[Shape.Batch * ld];
        for (int m = 0, row = 0; m < MicroBatches; row += rows[m], m++)
            if (active.Contains(m)) Array.Copy(work[^1][m].Pass.ReadLogProbs(), 0, logProbs, row * ld, rows[m] * ld);
        if (!backward) return (logProbs, null);

        var first = work[0];
        var sum = new double[first[0].Pass.PromptGradient!.Length];
        var part = new float[sum.Length];
        double tokens = host.TargetTokens;
        foreach (int m in active)
        {
            Backend(first).Download(first[m].Pass.PromptGradient!, part);
            double share = micro[m].TargetTokens / tokens;
            for (int i = 0; i < sum.Length; i++) sum[i] += share * part[i];
        }
        return (logProbs, sum.Select(v => (float)v).ToArray());
    }

    static Backend Backend((T5Pass Pass, IRecording, IRecording?)[] stage) => stage[0].Pass.Backend;

    readonly record struct Task(int Stage, int Micro, bool Backward);

    /// <summary>
    /// Submits every stage's passes of <paramref name="active"/> micro-batches as soon as their
    /// input has crossed, and returns once all are complete. Each stage's passes go to its queue
    /// in a fixed order (forwards, then backwards; the last stage each backward right after its
    /// forward), so a pass there needs only the pass of the stage before (forward) or after
    /// (backward) on the same micro-batch; the host waits only when no stage can go on. The last
    /// stage's passes share what a forward keeps for its backward, which this order keeps apart.
    /// </summary>
    void Schedule(IReadOnlyList<int> active, bool backward)
    {
        int last = Stages - 1;
        var queues = Enumerable.Range(0, Stages).Select(s =>
            !backward ? active.Select(m => new Task(s, m, false)).ToList()
            : s == last ? active.SelectMany(m => new[] { new Task(s, m, false), new Task(s, m, true) }).ToList()
            : active.Select(m => new Task(s, m, false)).Concat(active.Select(m => new Task(s, m, true))).ToList()).ToArray();
        var next = new int[Stages];
        var submitted = new Dictionary<Task, GpuTicket>();
        while (true)
        {
            bool progressed = false, done = true;
            GpuTicket? blocker = null;
            for (int s = 0; s < Stages; s++)
                while (next[s] < queues[s].Count)
                {
                    done = false;
                    var t = queues[s][next[s]];
                    Task? needs = t.Backward ? (s < last ? t with { Stage = s + 1 } : null) : (s > 0 ? t with { Stage = s - 1 } : null);
                    if (needs is { } n)
                    {
                        if (!submitted.TryGetValue(n, out var ticket)) break;
                        if (!ticket.IsComplete)
                        {
                            blocker ??= ticket;
                            break;
                        }
                        Cross(n, t);
                    }
                    var (_, forward, back) = work[s][t.Micro];
                    submitted[t] = (t.Backward ? back! : forward).Submit([]);
                    next[s]++;
                    progressed = true;
                }
            if (done) break;
            if (!progressed) (blocker ?? throw new InvalidOperationException("pipeline schedule stalled with nothing in flight")).Wait();
        }
        foreach (var ticket in submitted.Values) ticket.Wait();
    }

    /// <summary>Copies what <paramref name="from"/> made into what <paramref name="to"/> reads:
    /// the activations after a stage's forward, the gradients before its backward.</summary>
    void Cross(Task from, Task to)
    {
        var source = work[from.Stage][from.Micro].Pass;
        var target = work[to.Stage][to.Micro].Pass;
        var (src, dst) = to.Backward ? (source.Before!, target.After!) : (source.After!, target.Before!);
        foreach (var (a, b) in src.Tensors.Zip(dst.Tensors))
        {
            if (transfer.Length < a.Length) transfer = new float[a.Length];
            var span = transfer.AsSpan(0, (int)a.Length);
            source.Backend.Download(a, span);
            target.Backend.Upload(b, span);
        }
    }

    static void Dispose(PassScratch shared, (T5Pass Pass, IRecording Forward, IRecording? Backward)[] stage)
    {
        foreach (var (pass, forward, backward) in stage)
        {
            backward?.Dispose();
            forward.Dispose();
            pass.Dispose();
        }
        shared.Dispose();
    }

    public void Dispose()
    {
        for (int s = 0; s < Stages; s++) Dispose(scratch[s], work[s]);
    }
}
