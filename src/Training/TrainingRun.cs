using System.Diagnostics;
using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>
/// A whole prompt-tuning run: data order, the step loop, periodic validation with early
/// stopping (the best prompt is kept; with a patience, the run also ends once validation stops
/// improving), checkpoints to resume from and the metrics log, all in one output directory
/// (<see cref="TrainingDirectory"/>). Everything that decides the numbers (data order, dropout
/// masks) is a function of (seed, step), so a resumed run reproduces the uninterrupted one bit
/// for bit. Made by <see cref="PromptModel.Train"/>.
/// </summary>
public sealed class TrainingRun
{
    readonly PromptModel model;
    readonly TrainOptions o;
    readonly IReadOnlyList<EncodedExample> train;
    readonly IReadOnlyList<EncodedExample>? validation;
    readonly IReadOnlyList<string>? validationTargets;

    /// <summary>The class labels: <see cref="TrainOptions.Choices"/>, else the training targets
    /// where they form a small label set; null for free text.</summary>
    public IReadOnlyList<string>? Labels { get; }
    /// <summary>The initialiser the run starts a new prompt with (<see cref="TrainOptions.Init"/>, auto resolved).</summary>
    public string Init { get; }
    /// <summary>The prompt length the run trains (<see cref="TrainOptions.PromptLength"/>, null resolved).</summary>
    public int PromptLength { get; }
    /// <summary>What encoding cut from the examples, training and validation (<see cref="ExampleEncoder.Report"/>).</summary>
    public string Truncation { get; }
    /// <summary>Where the run writes.</summary>
    internal TrainingDirectory Directory { get; }

    /// <summary>Called after every step with its report (validation fields on eval steps).</summary>
    public Action<StepReport>? OnStep { get; set; }
    /// <summary>Where the run says what it is doing (resuming, and from where).</summary>
    public Action<string>? Log { get; set; }

    /// <summary>The processes the run spans (the model's <see cref="PromptModel.ProcessGroup"/>:
    /// the ranks of an MPI job), each running this run on the same data and options: rank 0 alone
    /// takes the output directory and writes it (checkpoints, adapters, metrics) and validates;
    /// every rank reads the checkpoint it resumes from, so the directory must be on a filesystem
    /// they share. The ranks agree at every step whether to stop (a signal on any rank, early
    /// stopping on rank 0), so none waits for the others forever.</summary>
    IProcessGroup Group => model.ProcessGroup;

    /// <summary>Whether this process writes the output directory: rank 0.</summary>
    bool Writes => Group.Rank == 0;

    internal TrainingRun(PromptModel model, IReadOnlyList<Example> train, IReadOnlyList<Example>? validation, TrainOptions options, string outputDirectory)
    {
        if (train.Count == 0) throw new TrainingOptionException($"the training data has no examples");
        for (int i = 0; i < (validation?.Count ?? 0); i++)
            if (validation![i].Target is null) throw new TrainingOptionException($"validation example {i + 1} has no target");
        this.model = model;
        o = options;
        Directory = new TrainingDirectory(outputDirectory);
        Labels = options.Choices ?? RankClassifier.LabelSet(train);
        Init = PromptInitializer.Resolve(options.Init, Labels);
        // A checkpoint to resume, or else a file:PATH prompt, brings its own length.
        PromptLength = options.PromptLength ?? (options.Resume ? Directory.CheckpointPromptLength() : null) ?? PromptInitializer.FileLength(o.Init, model.DModel) ?? TrainOptions.DefaultPromptLength;
        RefuseTooLarge(o, PromptLength, model.Config);
        var enc = model.Encoder(o.MaxInputLength, o.MaxTargetLength);
        this.train = train.Select(enc.Encode).ToList();
        Truncation = enc.Report();
        if (validation is not null)
        {
            var vEnc = model.Encoder(o.MaxInputLength, o.MaxTargetLength);
            this.validation = validation.Select(vEnc.Encode).ToList();
            validationTargets = validation.Select(e => e.Target!).ToList();
            if (vEnc.Truncated) Truncation += $"; validation: {vEnc.Report()}";
        }
    }

    /// <summary>Refuses a batch whose largest activation a buffer cannot index, before the prompt
    /// or any batch is made (issue 21 finding 7); the C API's trainer asks it too.</summary>
    internal static void RefuseTooLarge(TrainOptions o, int promptLength, T5Config config)
    {
        long elements = BatchShape.LargestActivation(o.BatchSize, (long)promptLength + o.MaxInputLength, o.MaxTargetLength, config);
        if (elements > BatchShape.MaxElements)
            throw new TrainingOptionException($"{Setting.BatchSize} {o.BatchSize} with a {promptLength}-token prompt ({Setting.PromptLength}) and up to {o.MaxInputLength} input tokens ({Setting.MaxInputLength}) needs activations of {elements} elements, more than the {BatchShape.MaxElements} a buffer can index: make them smaller");
    }

    /// <summary>Example indices of batch <paramref name="step"/>: docs/numerics.md's (s·B + i) mod N, through
    /// a per-epoch permutation when shuffling.</summary>
    internal static int[] BatchIndices(int step, int batchSize, int n, bool shuffle, int seed)
    {
        var idx = new int[batchSize];
        int[]? perm = null;
        long permEpoch = -1;
        for (int i = 0; i < batchSize; i++)
        {
            long k = (long)step * batchSize + i;
            int j = (int)(k % n);
            if (shuffle)
            {
                long epoch = k / n;
                if (epoch != permEpoch)
                {
                    perm = Enumerable.Range(0, n).ToArray();
                    new Random(EpochSeed(seed, epoch)).Shuffle(perm);
                    permEpoch = epoch;
                }
                j = perm![j];
            }
            idx[i] = j;
        }
        return idx;
    }

    /// <summary>The shuffling seed of one epoch: a fixed mix of the run's seed and the epoch, so
    /// every process draws the same order (HashCode.Combine is randomised per process).</summary>
    static int EpochSeed(int seed, long epoch) => (int)(((uint)seed * 0x9E3779B9u) ^ ((uint)epoch * 0xC2B2AE35u));

    /// <summary>Trains until <see cref="TrainOptions.Steps"/>, the patience runs out, or
    /// <paramref name="cancel"/> (then after the step in flight, with a checkpoint of it). The
    /// output directory ends with the adapter of the best validation prompt (else the last), the
    /// checkpoint and the metrics log.</summary>
    public TrainingResult Run(CancellationToken cancel = default)
    {
        if (!Writes) return RunLocked(cancel);
        Directory.Prepare(o);
        try { return RunLocked(cancel); }
        finally
        {
            if (Directory.Begun) Finishing?.Invoke();
            Directory.Dispose();
        }
    }

    /// <summary>What a front end writes into the directory when the run ends (its chart), while
    /// the run still holds the directory's lock; not where an overwrite never began.</summary>
    internal Action? Finishing { get; set; }

    TrainingResult RunLocked(CancellationToken cancel)
    {
        var weights = model.Weights;
        float[] prompt;
        float[]? optState = null;
        int step = 0;
        var best = new BestPrompt();
        if ((o.Resume ? Directory.ReadCheckpoint(model.DModel, PromptLength, weights.Precision, o.Optimizer, o.Seed) : null) is { } saved)
        {
            (prompt, optState, step, best) = (saved.Prompt, saved.OptimizerState, saved.Step, saved.Best);
            Log?.Invoke($"resuming from step {step} ({Directory.Checkpoint})");
        }
        else
        {
            if (o.Resume) Log?.Invoke($"nothing to resume: no checkpoint in {Directory.Path}; starting from step 0");
            prompt = PromptInitializer.Create(Init, PromptLength, model.Checkpoint, model.Tokenizer, Labels, o.Seed);
        }
        AgreeOnTheStep(step);
        // Made at the first step, not before: an overwrite keeps the earlier run's log until the
        // new run has started (Directory.Begin).
        MetricsLog? metrics = null;
        int resumedAt = step;
        float dropout = o.Dropout ?? (float)model.Config.DropoutRate;
        using var scorer = validation is null || !Writes ? null : model.OpenScorer();
        var validate = scorer is null ? null : new Validation(model, scorer, validation!, validationTargets!, Labels, o.BatchSize, o.MaxTargetLength);
        using var trainer = model.CreateTrainer(prompt, o.Optimizer, dropout, o.Seed, o.ActivationMode, optState, step, o.StepOffset);
        foreach (var b in model.Backends) b.ResetPeakMemory();
        var clock = Stopwatch.StartNew();
        int stepsThisRun = 0;
        float[]? bestPrompt = null;
        StepReport? last = null;
        // Of the validation data, which every rank has, not of validate (rank 0's): every rank
        // reads the same checkpoint, so all agree whether its patience had run out.
        bool Patient() => o.Patience == 0 || validation is null || best.EvaluationsSince < o.Patience;
        bool stoppedEarly = !Patient();
        bool interrupted = false;
        while (trainer.Step < o.Steps && !stoppedEarly)
        {
            // A signal to any rank stops every rank after the same step.
            if (Group.Any(cancel.IsCancellationRequested))
            {
                interrupted = true;
                break;
            }
            var batch = BatchIndices(trainer.Step, o.BatchSize, train.Count, o.Shuffle, o.Seed).Select(i => train[i]).ToList();
            double loss = trainer.TrainStep(batch, o.BatchSize);
            stepsThisRun++;
            int s = trainer.Step;
            if (!double.IsFinite(loss)) throw Diverged($"the training loss of step {s} is {loss}");
            if (Writes) Directory.Begin();
            var report = new StepReport(s, loss, batch.Sum(e => e.InputIds.Length + e.TargetIds.Length), stepsThisRun / clock.Elapsed.TotalSeconds);
            bool evaluates = validation is not null && o.EvalEvery > 0 && (s % o.EvalEvery == 0 || s == o.Steps);
            if (evaluates && validate is not null)
            {
                var current = trainer.Prompt();
                double vLoss;
                double? vAcc;
                try { (vLoss, vAcc) = validate.Evaluate(current, PromptLength); }
                catch (NonFiniteOutputException e) { throw Diverged($"validating the prompt of step {s}: {e.Message}"); }
                report = report with { ValidationLoss = vLoss, ValidationAccuracy = vAcc };
                // Early stopping as in the paper: the prompt that scored best on validation is kept.
                if (best.Offer(s, vAcc, vLoss))
                {
                    bestPrompt = current;
                    SaveAdapter(Directory.Best, current, o.ExportNpy);
                }
                stoppedEarly = !Patient();
            }
            // Rank 0 validated; every rank stops with it.
            if (evaluates) stoppedEarly = Group.Any(stoppedEarly);
            OnStep?.Invoke(report);
            last = report;
            if (!Writes) continue;
            metrics ??= new MetricsLog(Directory.Metrics, resumedAt);
            metrics.Append(report);
            // The step an early stop ends at is checkpointed, so a resumed run knows the run is
            // over (or, with a larger patience, continues from exactly here).
            if ((o.SaveEvery > 0 && s % o.SaveEvery == 0) || s == o.Steps || stoppedEarly)
                SaveCheckpoint(trainer, best);
        }
        var final = trainer.Prompt();
        if (Writes)
        {
            if (interrupted) SaveCheckpoint(trainer, best);
            Directory.Begin();
            SaveAdapter(Directory.Path, bestPrompt ?? (best.Step >= 0 ? PromptFile.Load(Directory.Best, model.DModel, out _) : final), o.ExportNpy);
        }
        return new TrainingResult(trainer.Step, last?.Loss, best.Step, best.Step >= 0 ? best.Metric : null,
                                  model.Backends.Max(b => b.MemoryUse.Peak), final, stoppedEarly, interrupted);
    }

    /// <summary>Every rank starts from the same step: a rank that found no checkpoint (or another)
    /// where rank 0 found one reads another directory than rank 0 writes.</summary>
    void AgreeOnTheStep(int step)
    {
        if (Group.Size == 1) return;
        var steps = new double[Group.Size];
        Group.AllGather([step], steps);
        int other = Array.FindIndex(steps, s => s != steps[0]);
        if (other >= 0)
            throw new TrainingOptionException($"rank 0 starts at step {steps[0]} but rank {other} at step {steps[other]}: every rank resumes from the checkpoint in {Setting.OutputDirectory} {Directory.Path}, which must be on a filesystem the ranks share");
    }

    /// <summary>What stops the run: the prompt is past saving (every later step and checkpoint
    /// would carry its NaNs), while the checkpoint, adapter, best prompt and metrics last written
    /// stay as they were.</summary>
    TrainingDivergedException Diverged(string what) => new(
        $"{what}: training diverged and stopped; {Directory.Path} keeps the checkpoint, adapter and best prompt written before it. A lower {Setting.LearningRate} or {Setting.ClippingThreshold}, or {Setting.WeightPrecision} fp32 with 16-bit weights, may avoid it");

    void SaveCheckpoint(IStepTrainer trainer, BestPrompt best)
    {
        Directory.Begin();
        Directory.WriteCheckpoint(trainer, best, o.Seed, model.Weights.Precision);
        SaveAdapter(Directory.Path, trainer.Prompt(), exportNpy: false);
    }

    void SaveAdapter(string dir, float[] prompt, bool exportNpy) => Adapter.Save(dir, prompt, model.Config, model.Checkpoint.Directory, Init, exportNpy);
}

/// <summary>What a run ends with; <paramref name="FinalLoss"/> is null when it took no step (a
/// resumed run whose checkpoint had reached its steps, or its patience, already).</summary>
/// <param name="Steps">The optimizer steps taken in all.</param>
/// <param name="FinalLoss">The loss of the last step this run took.</param>
/// <param name="BestStep">The step of the best validation score; -1 without validation.</param>
/// <param name="BestMetric">That score: accuracy where there is one, else minus the loss.</param>
/// <param name="PeakMemoryBytes">The peak memory during the run of the device that needed the most (of several: data parallel, or a pipeline's stages).</param>
/// <param name="FinalPrompt">The prompt of the last step (the adapter holds the best).</param>
/// <param name="StoppedEarly">Validation ran out of <see cref="TrainOptions.Patience"/>.</param>
/// <param name="Interrupted">The cancellation token (on any process of the run) stopped it; a checkpoint of its last step was written.</param>
public sealed record TrainingResult(int Steps, double? FinalLoss, int BestStep, double? BestMetric, long PeakMemoryBytes, float[] FinalPrompt,
                                    bool StoppedEarly = false, bool Interrupted = false);
