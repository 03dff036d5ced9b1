using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// A whole prompt-tuning run: data order, the step loop, periodic validation with early
/// stopping (the best prompt is kept; with a patience, the run also ends once validation stops
/// improving), checkpoints for <c>--resume</c>, metrics.jsonl and the
/// chart. Everything that decides the numbers (data order, dropout masks) is a function of
/// (seed, step), so a resumed run reproduces the uninterrupted one bit for bit.
/// </summary>
public sealed class TrainingRun
{
    public const string CheckpointFile = "checkpoint.safetensors";
    public const string MetricsFile = "metrics.jsonl";
    public const string ChartFile = "training.png";
    /// <summary>The adapter of the best prompt on validation so far.</summary>
    public const string BestDirectory = "best";

    readonly T5Checkpoint ckpt;
    readonly T5Weights weights;
    readonly T5Tokenizer tokenizer;
    readonly TrainOptions o;
    readonly IReadOnlyList<EncodedExample> train;
    readonly Validation? validation;
    readonly string outputDir;

    public IReadOnlyList<string>? Labels { get; }
    public string Init { get; }

    /// <summary>Called after every step with its report (validation fields on eval steps).</summary>
    public Action<StepReport>? OnStep { get; set; }
    public Action<string>? Log { get; set; }

    public TrainingRun(T5Checkpoint ckpt, T5Weights weights, T5Tokenizer tokenizer, TrainOptions options,
                       IReadOnlyList<EncodedExample> train, Validation? validation, IReadOnlyList<string>? labels, string outputDir)
    {
        this.ckpt = ckpt; this.weights = weights; this.tokenizer = tokenizer; o = options;
        this.train = train; this.validation = validation; this.outputDir = outputDir;
        Labels = labels;
        Init = PromptInitializer.Resolve(options.Init, labels);
        if (train.Count == 0) throw new TrainingOptionException("the training file has no examples");
    }

    /// <summary>Example indices of batch <paramref name="step"/>: docs/numerics.md's (s·B + i) mod N, through
    /// a per-epoch permutation when shuffling.</summary>
    public static int[] BatchIndices(int step, int batchSize, int n, bool shuffle, int seed)
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

    /// <param name="overwrite">replace an earlier run in the output directory (<see cref="ClearRun"/>);
    /// without it, and without <paramref name="resume"/>, a directory that holds one is refused, so
    /// a finished run is never lost to a repeated command.</param>
    public TrainingResult Run(bool resume, bool exportNpy, CancellationToken cancel = default, bool overwrite = false)
    {
        CheckOutput(outputDir, resume, overwrite);
        if (overwrite) ClearRun(outputDir);
        Directory.CreateDirectory(outputDir);
        string ckptPath = Path.Combine(outputDir, CheckpointFile);
        float[] prompt;
        float[]? optState = null;
        int step = 0;
        var best = new BestPrompt();
        if (resume && File.Exists(ckptPath))
        {
            using var f = SafetensorsFile.Open(ckptPath);
            foreach (var name in new[] { "prompt", "optimizer_state" })
                if (!f.Tensors.ContainsKey(name)) throw new ModelFormatException(ckptPath, $"has no tensor {name}: not a VkPrompt training checkpoint");
            CheckPromptShape(ckptPath, f.Tensors["prompt"].Shape);
            prompt = ReadAll(f, "prompt");
            optState = ReadAll(f, "optimizer_state");
            step = int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture);
            best = BestPrompt.Read(f.Metadata);
            // Another weight precision computes other numbers: the promise of a bit-identical
            // continuation only holds with the one the run started with.
            if (f.Metadata.TryGetValue("precision", out var p) && p != weights.Precision.Name())
                throw new TrainingOptionException($"{ckptPath} was trained with --precision {p}; resume with the same precision (now {weights.Precision.Name()})");
            Log?.Invoke($"resuming from step {step} ({ckptPath})");
        }
        else
        {
            if (resume) Log?.Invoke($"--resume: no checkpoint in {outputDir}; starting from step 0");
            prompt = PromptInitializer.Create(Init, o.PromptLength, ckpt, tokenizer, Labels, o.Seed);
        }
        var metrics = new MetricsLog(Path.Combine(outputDir, MetricsFile), step);
        float dropout = o.Dropout ?? (float)ckpt.Config.DropoutRate;
        using var trainer = new PromptTrainer(weights, prompt, o.Optimizer, dropout, o.Seed, o.Activations, optState, step, o.StepOffset);
        weights.Backend.ResetPeakMemory();
        var clock = Stopwatch.StartNew();
        int stepsThisRun = 0;
        float[]? bestPrompt = null;
        StepReport? last = null;
        bool Patient() => o.Patience == 0 || validation is null || best.EvaluationsSince < o.Patience;
        bool stoppedEarly = !Patient();
        while (trainer.Step < o.Steps && !stoppedEarly && !cancel.IsCancellationRequested)
        {
            var idx = BatchIndices(trainer.Step, o.BatchSize, train.Count, o.Shuffle, o.Seed);
            double loss = trainer.TrainStep(idx.Select(i => train[i]).ToList(), o.BatchSize);
            stepsThisRun++;
            int s = trainer.Step;
            if (!double.IsFinite(loss)) throw Diverged(metrics, $"the training loss of step {s} is {loss}");
            var report = new StepReport(s, loss, 0, stepsThisRun / clock.Elapsed.TotalSeconds);
            if (validation is not null && o.EvalEvery > 0 && (s % o.EvalEvery == 0 || s == o.Steps))
            {
                var current = trainer.Prompt();
                double vLoss;
                double? vAcc;
                try { (vLoss, vAcc) = validation.Evaluate(current, o.PromptLength); }
                catch (NonFiniteOutputException e) { throw Diverged(metrics, $"validating the prompt of step {s}: {e.Message}"); }
                report = report with { ValidationLoss = vLoss, ValidationAccuracy = vAcc };
                // Early stopping as in the paper: the prompt that scored best on validation is kept.
                if (best.Offer(s, vAcc, vLoss))
                {
                    bestPrompt = current;
                    Adapter.Save(Path.Combine(outputDir, BestDirectory), current, ckpt.Config, ckpt.Directory, Init, exportNpy);
                }
                stoppedEarly = !Patient();
            }
            metrics.Append(report);
            OnStep?.Invoke(report);
            last = report;
            // The step an early stop ends at is checkpointed, so a --resume knows the run is over
            // (or, with a larger --patience, continues from exactly here).
            if ((o.SaveEvery > 0 && s % o.SaveEvery == 0) || s == o.Steps || stoppedEarly)
                SaveCheckpoint(ckptPath, trainer, best);
        }
        if (cancel.IsCancellationRequested) SaveCheckpoint(ckptPath, trainer, best);
        var final = trainer.Prompt();
        Adapter.Save(outputDir, bestPrompt ?? (best.Step >= 0 ? LoadBest() : final), ckpt.Config, ckpt.Directory, Init, exportNpy);
        MetricsChart.Write(Path.Combine(outputDir, ChartFile), metrics.ReadAll());
        return new TrainingResult(trainer.Step, last?.Loss, best.Step, best.Step >= 0 ? best.Metric : null,
                                  weights.Backend.MemoryUse.Peak, final, stoppedEarly);
    }

    /// <summary>What stops the run: the prompt is past saving (every later step and checkpoint
    /// would carry its NaNs), while the checkpoint, adapter and best prompt last written stay as
    /// they were. The chart still shows the steps up to here.</summary>
    TrainingDivergedException Diverged(MetricsLog metrics, string what)
    {
        MetricsChart.Write(Path.Combine(outputDir, ChartFile), metrics.ReadAll());
        return new TrainingDivergedException(
            $"{what}: training diverged and stopped; {outputDir} keeps the checkpoint, adapter and best prompt written before it. " +
            "A lower --lr or --clip, or --precision fp32 with 16-bit weights, may avoid it");
    }

    /// <summary>Throws unless a run may write to <paramref name="outputDir"/> as asked: a directory
    /// that holds an earlier run needs <paramref name="resume"/> or <paramref name="overwrite"/>
    /// (not both). Cheap, so front ends call it before loading a model; <see cref="Run"/> calls it too.</summary>
    public static void CheckOutput(string outputDir, bool resume, bool overwrite)
    {
        if (resume && overwrite) throw new TrainingOptionException("--resume continues the run in the output directory and --overwrite replaces it: give one");
        if (resume || overwrite) return;
        if (new[] { CheckpointFile, Adapter.WeightsFile }.FirstOrDefault(f => File.Exists(Path.Combine(outputDir, f))) is { } earlier)
            throw new TrainingOptionException($"{outputDir} holds an earlier run ({earlier}); continue it with --resume, replace it with --overwrite, or choose another --output");
    }

    /// <summary>Deletes what a run writes in <paramref name="outputDir"/>, and nothing else there.</summary>
    public static void ClearRun(string outputDir)
    {
        if (!Directory.Exists(outputDir)) return;
        foreach (var f in new[] { CheckpointFile, MetricsFile, ChartFile, Adapter.WeightsFile, Adapter.ConfigFile, Adapter.NpyFile })
            File.Delete(Path.Combine(outputDir, f));
        var best = Path.Combine(outputDir, BestDirectory);
        if (Directory.Exists(best)) Directory.Delete(best, recursive: true);
    }

    /// <summary>The prompt length of the checkpoint in <paramref name="outputDir"/>, if there is one:
    /// what a resumed run trains unless told otherwise.</summary>
    public static int? CheckpointPromptLength(string outputDir)
    {
        string path = Path.Combine(outputDir, CheckpointFile);
        if (!File.Exists(path)) return null;
        using var f = SafetensorsFile.Open(path);
        return f.Tensors.TryGetValue("prompt", out var info) && info.Shape.Length == 2 ? checked((int)info.Shape[0]) : null;
    }

    /// <summary>A checkpoint of another model or prompt length would be read as a prompt of the
    /// wrong shape (its floats regrouped into other rows) and saved over the adapter.</summary>
    void CheckPromptShape(string path, long[] shape)
    {
        int d = ckpt.Config.DModel;
        if (shape.Length != 2 || shape[1] != d)
            throw new TrainingOptionException($"{path} holds a prompt of shape [{string.Join(", ", shape)}] but the model's d_model is {d}: it was trained on another model");
        if (shape[0] != o.PromptLength)
            throw new TrainingOptionException($"{path} holds a {shape[0]}-token prompt; resume with --prompt-length {shape[0]} (now {o.PromptLength})");
    }

    float[] LoadBest() => PromptFile.Load(Path.Combine(outputDir, BestDirectory), ckpt.Config.DModel, out _);

    static float[] ReadAll(SafetensorsFile f, string name)
    {
        var info = f.Tensors[name];
        var data = new float[info.Shape.Aggregate(1L, (a, b) => a * b)];
        f.ReadFloat32(name, data);
        return data;
    }

    void SaveCheckpoint(string path, PromptTrainer trainer, BestPrompt best)
    {
        var prompt = trainer.Prompt();
        var state = trainer.OptimizerState();
        SafetensorsWriter.Write(path,
            [("prompt", [trainer.PromptLength, trainer.Dim], prompt), ("optimizer_state", [state.Length], state)],
            new Dictionary<string, string>(best.Metadata())
            {
                ["step"] = trainer.Step.ToString(CultureInfo.InvariantCulture),
                ["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture),
                ["precision"] = weights.Precision.Name(),
            });
        Adapter.Save(outputDir, prompt, ckpt.Config, ckpt.Directory, Init);
    }
}

/// <summary>The best validation score so far, where it was reached, and how many evaluations
/// have not beaten it since (what --patience counts); all of it is in the checkpoint, so a
/// resumed run keeps and stops on the same prompt as an uninterrupted one.</summary>
sealed class BestPrompt
{
    /// <summary>Accuracy where there is one, else minus the loss: higher is better.</summary>
    public double Metric { get; private set; } = double.NegativeInfinity;
    public double Loss { get; private set; } = double.PositiveInfinity;
    public int Step { get; private set; } = -1;
    public int EvaluationsSince { get; private set; }

    /// <summary>Takes an evaluation; true when it is the new best. Equal accuracy with a lower
    /// loss counts as better: exact-match accuracy of generated text stays at one value for many
    /// evaluations early on, and without the tie-break patience would end the run there.</summary>
    public bool Offer(int step, double? accuracy, double loss)
    {
        double metric = accuracy ?? -loss;
        if (metric > Metric || (metric == Metric && loss < Loss))
        {
            (Metric, Loss, Step, EvaluationsSince) = (metric, loss, step, 0);
            return true;
        }
        EvaluationsSince++;
        return false;
    }

    public Dictionary<string, string> Metadata() => new()
    {
        ["best_metric"] = Metric.ToString("R", CultureInfo.InvariantCulture),
        ["best_loss"] = Loss.ToString("R", CultureInfo.InvariantCulture),
        ["best_step"] = Step.ToString(CultureInfo.InvariantCulture),
        ["evaluations_since_best"] = EvaluationsSince.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>From a checkpoint's metadata; one written before the loss and the count were kept
    /// reads as if its best were the last evaluation, with no loss to break a tie.</summary>
    public static BestPrompt Read(IReadOnlyDictionary<string, string> meta) => new()
    {
        Metric = double.Parse(meta["best_metric"], CultureInfo.InvariantCulture),
        Loss = meta.TryGetValue("best_loss", out var l) ? double.Parse(l, CultureInfo.InvariantCulture) : double.PositiveInfinity,
        Step = int.Parse(meta["best_step"], CultureInfo.InvariantCulture),
        EvaluationsSince = meta.TryGetValue("evaluations_since_best", out var n) ? int.Parse(n, CultureInfo.InvariantCulture) : 0,
    };
}

/// <summary>What a run ends with; <paramref name="FinalLoss"/> is null when it took no step (a
/// resumed run whose checkpoint had reached its steps, or its patience, already).
/// <paramref name="StoppedEarly"/>: validation ran out of <see cref="TrainOptions.Patience"/>.</summary>
public sealed record TrainingResult(int Steps, double? FinalLoss, int BestStep, double? BestMetric, long PeakMemoryBytes, float[] FinalPrompt,
                                    bool StoppedEarly = false);

/// <summary>metrics.jsonl: one object per logged step. A resumed run drops the lines after its
/// checkpoint so the file reads as one uninterrupted run.</summary>
sealed class MetricsLog
{
    readonly string path;

    public MetricsLog(string path, int resumeStep)
    {
        this.path = path;
        var kept = File.Exists(path) ? File.ReadLines(path).Where(l => StepOf(l) is int s && s <= resumeStep).ToList() : [];
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    static int? StepOf(string line)
    {
        try { return JsonNode.Parse(line)?["step"]?.GetValue<int>(); }
        catch (System.Text.Json.JsonException) { return null; }
    }

    public void Append(StepReport r)
    {
        var o = new JsonObject { ["step"] = r.Step, ["loss"] = r.Loss, ["steps_per_s"] = Math.Round(r.StepsPerSecond, 3) };
        if (r.ValidationLoss is double vl) o["val_loss"] = vl;
        if (r.ValidationAccuracy is double va) o["val_accuracy"] = va;
        File.AppendAllText(path, o.ToJsonString() + "\n");
    }

    public List<StepReport> ReadAll() =>
        File.ReadLines(path).Select(l => JsonNode.Parse(l)!).Select(n => new StepReport(
            n["step"]!.GetValue<int>(), n["loss"]!.GetValue<double>(), 0, n["steps_per_s"]!.GetValue<double>(),
            n["val_loss"]?.GetValue<double>(), n["val_accuracy"]?.GetValue<double>())).ToList();
}
