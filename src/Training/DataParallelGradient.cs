using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// The prompt gradient and loss of one batch computed data parallel: every worker (a device
/// holding the whole frozen model; the devices of this process, over the processes of an
/// <see cref="IProcessGroup"/>) takes a share of the batch's rows, and the parts are combined in a
/// fixed order so every process holds the same bits and a run repeats bit for bit. The result
/// is the one-device result within docs/numerics.md's tolerance (at dropout 0: see
/// <see cref="WorkerDropoutSeed"/>).
/// </summary>
internal sealed class DataParallelGradient : IDisposable
{
    /// <summary>One device's replica of the model, the prompt it reads, and its kept step.</summary>
    sealed class Worker(T5Weights weights, Tensor prompt) : IDisposable
    {
        public T5Weights Weights { get; } = weights;
        public Tensor Prompt { get; } = prompt;
        // As PromptTrainer: one shape's recording is kept, re-recorded when the shape changes.
        (T5Pass Pass, IRecording Run)? last;


        public (T5Pass Pass, IRecording Run) StepFor(BatchShape shape, ActivationMode activations, float dropout)
        {
            if (last is { } kept && kept.Pass.Shape == shape) return kept;
            DisposeStep();
            last = PromptTrainer.RecordStep(Weights, shape, activations, Prompt, dropout, after: null);
            return last.Value;
        }

        void DisposeStep()
        {
            if (last is { } kept) { kept.Run.Dispose(); kept.Pass.Dispose(); }
            last = null;
        }

        public void Dispose()
        {
            DisposeStep();
            Prompt.Dispose();
        }
    }

    readonly List<Worker> workers = [];
    readonly IProcessGroup group;
    readonly ActivationMode activations;
    readonly float dropout;
    readonly int seed, dim;
    /// <summary>The global index of this process's first worker, and the workers of all processes.</summary>
    readonly int firstWorker, allWorkers;

    /// <summary>The prompt's length in rows.</summary>
    public int PromptLength { get; }

    /// <param name="replicas">The model on each device of this process, in worker order (at least one).</param>
    /// <param name="group">The processes the batch is split over; every process calls every method
    /// in the same order with the same batch (it forms the batch from the seed and the step).</param>
    /// <param name="prompt">The prompt, [prompt length x d_model].</param>
    /// <param name="activations">Whether blocks' activations are stored or recomputed.</param>
    /// <param name="dropout">The dropout rate (0: none).</param>
    /// <param name="seed">Seeds the dropout masks.</param>
    public DataParallelGradient(IReadOnlyList<T5Weights> replicas, IProcessGroup group, float[] prompt, ActivationMode activations, float dropout, int seed)
    {
        if (replicas.Count == 0) throw new ArgumentException("data parallel needs at least one device", nameof(replicas));
        (this.group, this.activations, this.dropout, this.seed) = (group, activations, dropout, seed);
        dim = replicas[0].Config.DModel;
        if (prompt.Length == 0 || prompt.Length % dim != 0) throw new ArgumentException($"a prompt is a whole number of rows of d_model {dim}; got {prompt.Length} floats", nameof(prompt));
        PromptLength = prompt.Length / dim;
        // Processes may hold different numbers of devices: each learns every process's count, so
        // all agree on the global order of workers (rank by rank, devices in order within a rank).
        var counts = new double[group.Size];
        group.AllGather([replicas.Count], counts);
        firstWorker = (int)counts.Take(group.Rank).Sum();
        allWorkers = (int)counts.Sum();
        try
        {
            foreach (var w in replicas)
            {
                var t = w.Backend.Floats(prompt.Length, "prompt");
                workers.Add(new Worker(w, t));
                w.Backend.Upload(t, prompt);
            }
        }
        catch { Dispose(); throw; }
    }

    /// <summary>The first local worker's model and prompt buffer: where the optimizer runs.</summary>
    public (T5Weights Weights, Tensor Prompt) First => (workers[0].Weights, workers[0].Prompt);

    /// <summary>Gives every local worker <paramref name="prompt"/>, the first one too unless
    /// <paramref name="exceptFirst"/> (whose buffer already holds it: the optimizer wrote it there).</summary>
    public void SetPrompt(float[] prompt, bool exceptFirst = false)
    {
        foreach (var w in workers.Skip(exceptFirst ? 1 : 0)) w.Weights.Backend.Upload(w.Prompt, prompt);
    }

    /// <summary>A worker's dropout seed. Masks hash an element's index within the pass, so two
    /// workers given one seed would drop the same units of their first rows; each worker mixes its
    /// index in (worker 0 keeps the one-device seed). Masks therefore differ from one device's:
    /// equally valid draws, repeated exactly by every run on the same workers, but equal to the
    /// one-device result only at dropout 0 (which the golden cases use).</summary>
    static int WorkerDropoutSeed(int seed, int step, int worker) =>
        PromptTrainer.DropoutSeed(seed, step) ^ (int)((uint)worker * 0x27D4EB2Fu);

    /// <summary>The loss (mean over the whole batch's target tokens) and the gradient of it with
    /// respect to the prompt, of <paramref name="batch"/> taken as one batch, identical on every
    /// process.</summary>
    /// <param name="batch">The whole batch, the same on every process.</param>
    /// <param name="batchSize">Pads the batch to this many rows (a fixed shape, so recordings
    /// replay); null: the batch's own count. The padded rows are shared as the real ones are,
    /// so each worker's share has a fixed shape too.</param>
    /// <param name="step">The optimizer step, which seeds the dropout masks.</param>
    public (double Loss, double[] Gradient) Compute(IReadOnlyList<EncodedExample> batch, int? batchSize, int step)
    {
        int rows = batchSize ?? batch.Count;
        if (batch.Count == 0 || batch.Count > rows) throw new ArgumentException("a batch needs 1..batchSize examples");
        // Every target token counts once in the whole batch's mean (targets end in eos, so >= 1).
        long totalTokens = batch.Sum(e => (long)e.TargetIds.Length);
        int len = PromptLength * dim;
        var running = new (Worker Worker, T5Pass Pass, HostBatch Host, GpuTicket Ticket)[workers.Count];
        int started = 0;
        // All shares are submitted before any is waited for, so the devices work at once; the
        // host thread owns every context in turn (GpuContext: one thread at a time).
        for (int i = 0; i < workers.Count; i++)
        {
            int g = firstWorker + i;
            var (start, count) = HostBatch.Share(batch.Count, allWorkers, g);
            if (count == 0) continue;   // a worker with no real row has nothing to add
            var w = workers[i];
            var host = HostBatch.Build(batch.Skip(start).Take(count).ToList(), PromptLength,
                                       batchSize: HostBatch.Share(rows, allWorkers, g).Count, decoderStart: w.Weights.Config.DecoderStartTokenId);
            var (pass, run) = w.StepFor(host.Shape, activations, dropout);
            pass.Load(host);
            if (pass.DropoutSeed is not null) w.Weights.Backend.Upload(pass.DropoutSeed, [WorkerDropoutSeed(seed, step, g)]);
            running[started++] = (w, pass, host, run.Submit([]));
        }
        // This process's part: each share's gradient is of the mean over the share's own tokens
        // (the cross-entropy backward normalises by the tokens it sees), so it weighs
        // tokens / whole-batch tokens; summed in double, local workers in order. The last element
        // carries the summed log-probabilities.
        var part = new double[len + 1];
        var grad = new float[len];
        for (int i = 0; i < started; i++)
        {
            var (w, pass, host, ticket) = running[i];
            ticket.Wait();
            w.Weights.Backend.Download(pass.PromptGradient!, grad);
            double weight = (double)host.TargetTokens / totalTokens;
            for (int j = 0; j < len; j++) part[j] += weight * grad[j];
            part[len] += pass.ReadLogProbs().Sum(v => (double)v);
        }
        // Parts gathered whole and summed in rank order: every process adds the same numbers in
        // the same order (an all-reduce may associate differently on each rank).
        var all = new double[group.Size * (len + 1)];
        group.AllGather(part, all);
        var sum = new double[len + 1];
        for (int r = 0; r < group.Size; r++)
            for (int j = 0; j <= len; j++) sum[j] += all[r * (len + 1) + j];
        double loss = -sum[len] / totalTokens;
        return (loss, sum[..len]);
    }

    /// <summary>Frees every worker's step and prompt (the replicas are the model's).</summary>
    public void Dispose()
    {
        foreach (var w in workers) w.Dispose();
        workers.Clear();
    }
}
