using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create()
    {
        var o = new TrainArgs();
        var cmd = new Command("train", "Train a soft prompt on a frozen T5 (Lester et al. 2021) and write it as a PEFT prompt-tuning adapter. Defaults are the paper's: prompt length 100, class-label init, Adafactor lr 0.3, batch 32, 30k steps, best validation prompt kept.");
        o.AddTo(cmd);
        var distributed = Distributed.Option();
        cmd.Options.Add(distributed);
        cmd.SetAction(parse => Distributed.Run(parse, distributed, group =>
        {
            var t = o.Read(parse, checkOutput: group.Rank == 0);
            PipelineArgs.RefuseWithMpi(parse, t.Session.Pipeline, distributed);
            return Run(parse, t with { Session = t.Session with { Devices = Distributed.Devices(t.Session.Devices, group) } }, Distributed.Console(parse, group), group);
        }));
        return cmd;
    }

    /// <summary>Trains with the given settings, as one process of <paramref name="group"/> (null:
    /// this process alone); shared by train and demo.</summary>
    public static int Run(ParseResult parse, TrainSettings t, IAnsiConsole console, IProcessGroup? group = null)
    {
        var superGlue = t.Task is null ? null : SuperGlue.Get(t.Task);
        List<Example> train = superGlue is null ? DataFile.Read(t.TrainFile) : SuperGlue.Read(t.TrainFile, superGlue);
        List<Example>? val = t.ValidationFile is null ? null : superGlue is null ? DataFile.Read(t.ValidationFile) : SuperGlue.Read(t.ValidationFile, superGlue);
        var options = t.Options with { Choices = t.Options.Choices ?? superGlue?.Labels };
        using var s = new ModelSession(t.Model, t.Session, group is null ? ModelOptions.Log(parse) : Distributed.Log(parse, group));
        if (group is not null) s.Model.ProcessGroup = group;
        var run = s.Model.Train(train, val, options, t.Output);
        console.MarkupLineInterpolated($"[bold]VkPrompt train[/]: {train.Count} examples, {string.Join(" + ", s.Model.Backends.Select(b => b.Name))}{(s.Model.Pipeline is not null ? " (pipeline)" : s.Model.Backends.Count > 1 ? " (data parallel)" : "")}, {s.Model.Weights.Precision.Name()} weights; {run.Truncation}");
        console.MarkupLineInterpolated($"prompt {run.PromptLength} x {s.Model.DModel}, init {run.Init}, batch {options.BatchSize}, {options.Steps} steps, output {t.Output}");
        // The chart is the CLI's: listed with the run's files, so replacing a run replaces it too,
        // and drawn while the run still holds the directory, also where the loss diverged (it
        // shows the steps up to there).
        run.Directory.AlsoWrites(MetricsChart.File);
        run.Finishing = () => MetricsChart.Write(run.Directory);

        TrainingResult result = null!;
        StepReport? lastVal = null;
        using var cancel = new CancellationTokenSource();
        // Ctrl-C, and the SIGTERM of kill, docker stop or a batch scheduler's time limit, end the run
        // after the step in flight with a checkpoint, instead of losing everything since the last one.
        PosixSignal? stoppedBy = null;
        void Stop(PosixSignalContext c)
        {
            c.Cancel = true;
            stoppedBy ??= c.Signal;
            cancel.Cancel();
        }
        using (PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop))
        using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop))
        {
            if (console.Profile.Capabilities.Interactive)
            {
                console.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask("training", maxValue: options.Steps);
                        run.OnStep = r =>
                        {
                            if (r.ValidationLoss is not null) lastVal = r;
                            task.Value = r.Step;
                            task.Description = string.Create(CultureInfo.InvariantCulture, $"step {r.Step} loss {r.Loss:F4} {r.StepsPerSecond:F2} steps/s{ValText(lastVal)}");
                        };
                        run.Log = m => console.MarkupLineInterpolated($"{m}");
                        result = run.Run(cancel.Token);
                    });
            }
            else
            {
                // Not a terminal (a log file, CI): a plain line every ~5% of the run and at each evaluation.
                int every = Math.Max(1, options.Steps / 20);
                run.OnStep = r =>
                {
                    if (r.Step % every == 0 || r.Step == options.Steps || r.ValidationLoss is not null)
                    {
                        double eta = (options.Steps - r.Step) / Math.Max(r.StepsPerSecond, 1e-9);
                        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"step {r.Step}/{options.Steps}  loss {r.Loss:F4}  {r.StepsPerSecond:F2} steps/s  ETA {TimeSpan.FromSeconds(Math.Round(eta)):g}{ValText(r.ValidationLoss is null ? null : r)}"));
                    }
                };
                run.Log = m => console.WriteLine(m);
                result = run.Run(cancel.Token);
            }
        }

        // A signal to another rank stops this one too (TrainingRun.Group).
        bool interrupted = cancel.IsCancellationRequested || result.Interrupted;
        if (interrupted)
            console.MarkupLineInterpolated($"[yellow]{(stoppedBy == PosixSignal.SIGTERM ? "terminated" : "interrupted")} at step {result.Steps}[/]: checkpoint saved; continue with --resume");
        if (result.FinalLoss is double loss)
            console.MarkupLineInterpolated($"final training loss {loss:F4} after {result.Steps} steps; peak device memory {result.PeakMemoryBytes / (1024.0 * 1024.0):F1} MiB{(s.Model.Backends.Count > 1 ? " (the device that needed the most)" : "")}");
        if (result.StoppedEarly)
            console.MarkupLineInterpolated($"stopped early at step {result.Steps}: {options.Patience} evaluations in a row did not improve on step {result.BestStep} (--patience {options.Patience}); --resume with a larger --patience continues it");
        else if (result.FinalLoss is null && !interrupted)
            console.MarkupLineInterpolated($"no step to take: the checkpoint is at step {result.Steps} of --steps {options.Steps}; a larger --steps continues it");
        if (result.BestStep >= 0)
            console.MarkupLineInterpolated($"best validation at step {result.BestStep} ({(result.BestMetric is double m && m >= 0 ? $"accuracy {m:F4}" : $"loss {-(result.BestMetric ?? 0):F4}")}): kept as the adapter");
        console.MarkupLineInterpolated($"adapter: {Path.Combine(t.Output, Adapter.WeightsFile)}, metrics: {Path.Combine(t.Output, TrainingDirectory.MetricsFile)}, chart: {Path.Combine(t.Output, MetricsChart.File)}");
        return !interrupted ? Cli.Ok : stoppedBy == PosixSignal.SIGTERM ? Cli.Terminated : Cli.Interrupted;
    }

    static string ValText(StepReport? r) => r is null ? "" : string.Create(CultureInfo.InvariantCulture,
        $"  val loss {r.ValidationLoss:F4}{(r.ValidationAccuracy is double a ? $" acc {a:F3}" : "")}");
}

internal sealed record TrainSettings(string Model, string TrainFile, string? ValidationFile, string Output, SessionSettings Session, string? Task, TrainOptions Options);

/// <summary>The options of <c>vkprompt train</c>, kept together so demo can reuse the parsing.</summary>
internal sealed class TrainArgs
{
    readonly Option<string> model = ModelOptions.Model();
    readonly Option<string> train = new("--train") { HelpName = "FILE", Description = "Training data: JSONL {\"input\", \"target\"} lines, or the official SuperGLUE JSONL with --task.", Required = true };
    readonly Option<string?> validation = new("--validation") { HelpName = "FILE", Description = "Validation data (same format). Enables evaluation every --eval-every steps and early stopping: the best prompt is kept." };
    readonly Option<string> output = new("--output", "-o") { HelpName = "DIR", Description = "Output directory: the PEFT adapter (adapter_model.safetensors, adapter_config.json), checkpoint.safetensors for --resume, metrics.jsonl, training.png and vkprompt-run.json, which lists them. It must be new, empty or a run's (with vkprompt-run.json); one run at a time.", Required = true };
    readonly SessionArgs session = new();
    readonly Option<int> promptLength = new("--prompt-length") { Description = "Soft prompt length P. Default: the checkpoint's with --resume, else the length of an --init file:PATH prompt, else 100 (the paper's).", DefaultValueFactory = _ => 100 };
    readonly Option<int> steps = new("--steps") { Description = "Optimizer steps. Default: 30000 (the paper's).", DefaultValueFactory = _ => 30_000 };
    readonly Option<int> batch = ModelOptions.BatchSize(32);
    readonly Option<int> seed = new("--seed") { Description = "Seed for initialisation, shuffling and dropout. Default: 0.", DefaultValueFactory = _ => 0 };
    readonly Option<bool> noShuffle = new("--no-shuffle") { Description = "Take examples in file order: step s uses examples (s*B+i) mod N." };
    readonly Option<float?> dropout = new("--dropout") { Description = "Dropout rate during training. Default: the checkpoint's dropout_rate." };
    readonly Option<int> maxIn = ModelOptions.MaxInputLength();
    readonly Option<int> maxOut = ModelOptions.MaxTargetLength();
    readonly Option<int> evalEvery = new("--eval-every") { Description = "Evaluate on --validation every N steps (and at the end). Default: 1000.", DefaultValueFactory = _ => 1000 };
    readonly Option<int> patience = new("--patience") { Description = "Stop training once this many evaluations in a row have not improved on the best validation score (accuracy where there are labels, else loss); the best prompt is kept either way. Needs --validation. Default: 0, never: the paper trains every step and keeps the best.", DefaultValueFactory = _ => 0 };
    readonly Option<int> saveEvery = new("--save-every") { Description = "Write a resumable checkpoint every N steps (and at the end). Default: 1000.", DefaultValueFactory = _ => 1000 };
    readonly Option<bool> resume = new("--resume") { Description = "Continue from checkpoint.safetensors in --output; the result is bit-identical to an uninterrupted run." };
    readonly Option<bool> overwrite = new("--overwrite") { Description = "Replace an earlier run in --output: the files its vkprompt-run.json lists (checkpoint, adapter, best prompt, metrics, chart; nothing else there), once the new run has taken its first step. Without it, or --resume, train refuses a directory that holds a run, so a finished one is never lost to a repeated command." };
    readonly Option<string?> task = new("--task") { Description = "Read --train/--validation as official SuperGLUE JSONL of this task (boolq, cb, rte, wic, copa) with T5's formatting and label words." };
    readonly Option<string?> choices = new("--choices", "-c") { Description = "Comma-separated class labels (for class init and rank-classification accuracy). Default: the task's labels, or the training targets when they form a small label set." };
    readonly Option<string> init = new("--init") { Description = "Prompt initialisation: class (label embeddings, then sampled vocab), vocab (rows of the embedding from the 5000 most common ids; for ByT5, from the 256 byte ids), random (uniform [-0.5, 0.5]), text:STRING, or file:PATH. Default: class when labels are known, else vocab.", DefaultValueFactory = _ => "auto" };
    readonly Option<float> lr = new("--lr") { Description = "Adafactor learning rate (constant). Default: 0.3.", DefaultValueFactory = _ => 0.3f };
    readonly Option<float> weightDecay = new("--weight-decay") { Description = "Decoupled weight decay: the prompt is multiplied by 1 - this every step; in [0, 1). Default: 1e-5.", DefaultValueFactory = _ => 1e-5f };
    readonly Option<float> decayRate = new("--decay-rate") { Description = "Adafactor second-moment decay exponent. Default: 0.8.", DefaultValueFactory = _ => 0.8f };
    readonly Option<float> clip = new("--clip") { Description = "Update clipping threshold (RMS). Default: 1.0.", DefaultValueFactory = _ => 1.0f };
    readonly Option<float> eps1 = new("--epsilon1") { Description = "Added to squared gradients. Default: 1e-30.", DefaultValueFactory = _ => 1e-30f };
    readonly Option<int> minDim = new("--min-dim-to-factor") { Description = "Factor the second moment when the prompt's smaller dim is at least this. Default: 128.", DefaultValueFactory = _ => 128 };
    readonly Option<int> stepOffset = new("--step-offset") { Description = "Start Adafactor's step counter here (continuing a schedule). Default: 0.", DefaultValueFactory = _ => 0 };
    readonly Option<bool> exportNpy = new("--export-npy") { Description = "Also write the prompt as T5X numpy (prompt.npy, float32 [P, d_model])." };
    readonly Option<bool> recompute = new("--recompute") { Description = "Recompute block activations in the backward pass instead of storing them: much less memory for ~1.3x the time." };

    public void AddTo(Command c)
    {
        Cli.AddOptions(c, [model, train, validation, output, .. session.Options, promptLength, steps, batch, seed, noShuffle, dropout, maxIn, maxOut,
                           evalEvery, patience, saveEvery, resume, overwrite, task, choices, init, lr, weightDecay, decayRate, clip, eps1, minDim, stepOffset, exportNpy, recompute]);
    }

    /// <param name="checkOutput">Whether to check --output now: where this process will write it
    /// (an MPI rank other than 0 does not).</param>
    public TrainSettings Read(ParseResult p, bool checkOutput = true)
    {
        float? dr = p.GetValue(dropout);
        if (dr is { } rate && !(rate is >= 0 and < 1)) throw new UsageException($"--dropout must be in [0, 1), got {rate.ToString(CultureInfo.InvariantCulture)}");
        var optimizer = new AdafactorSettings
        {
            LearningRate = p.GetValue(lr), WeightDecay = p.GetValue(weightDecay), DecayRate = p.GetValue(decayRate),
            ClippingThreshold = p.GetValue(clip), Epsilon1 = p.GetValue(eps1), MinDimToFactor = p.GetValue(minDim),
        };
        try
        {
            optimizer.Validate(property => property switch
            {
                nameof(AdafactorSettings.LearningRate) => lr.Name,
                nameof(AdafactorSettings.WeightDecay) => weightDecay.Name,
                nameof(AdafactorSettings.DecayRate) => decayRate.Name,
                nameof(AdafactorSettings.ClippingThreshold) => clip.Name,
                nameof(AdafactorSettings.Epsilon1) => eps1.Name,
                nameof(AdafactorSettings.MinDimToFactor) => minDim.Name,
                _ => property,
            });
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        if (p.GetValue(patience) < 0) throw new UsageException($"{patience.Name} must be at least 0, got {p.GetValue(patience)}");
        if (p.GetValue(patience) > 0 && p.GetValue(validation) is null) throw new UsageException($"{patience.Name} stops on validation scores: it needs --validation");
        var sessionSettings = session.Read(p);
        if (p.GetValue(stepOffset) < 0) throw new UsageException($"{stepOffset.Name} must be at least 0, got {p.GetValue(stepOffset)}");
        var opts = new TrainOptions
        {
            PromptLength = p.GetResult(promptLength) is { Implicit: false } ? ModelOptions.Positive(p, promptLength) : null,
            Steps = ModelOptions.Positive(p, steps),
            BatchSize = ModelOptions.Positive(p, batch),
            Seed = p.GetValue(seed),
            Shuffle = !p.GetValue(noShuffle),
            Dropout = dr,
            MaxInputLength = ModelOptions.Positive(p, maxIn),
            MaxTargetLength = ModelOptions.Positive(p, maxOut),
            EvalEvery = ModelOptions.Positive(p, evalEvery),
            Patience = p.GetValue(patience),
            SaveEvery = ModelOptions.Positive(p, saveEvery),
            Init = p.GetValue(init)!,
            StepOffset = p.GetValue(stepOffset),
            ActivationMode = p.GetValue(recompute) ? ActivationMode.Recompute : ActivationMode.Store,
            Optimizer = optimizer,
            Choices = p.GetValue(choices) is string c ? Choices.Parse(c) : null,
            Resume = p.GetValue(resume),
            Overwrite = p.GetValue(overwrite),
            ExportNpy = p.GetValue(exportNpy),
        };
        // Before the model loads, which can take minutes.
        if (checkOutput) new TrainingDirectory(p.GetValue(output)!).Check(opts);
        return new TrainSettings(p.GetValue(model)!, p.GetValue(train)!, p.GetValue(validation), p.GetValue(output)!, sessionSettings, p.GetValue(task), opts);
    }
}
