using VkPrompt.Model;
using VkPrompt.Training;

namespace VkPrompt.Native;

/// <summary>
/// vkp_trainer: a <see cref="PromptTrainer"/> with what <see cref="TrainingRun"/> adds to its
/// steps and a host stepping it itself still needs: the prompt initialised as <c>vkprompt
/// train</c> does (<see cref="PromptInitializer"/>), the encoded examples and each step's batch
/// (<see cref="TrainingRun.BatchIndices"/>), and the adapter it writes (<see cref="Adapter"/>).
/// Validation, checkpoints and the metrics log are the run's, which the host replaces.
/// </summary>
internal sealed class NativeTrainer : IDisposable
{
    readonly PromptModel model;
    readonly TrainOptions options;
    readonly List<EncodedExample> train;
    readonly string init;
    readonly PromptTrainer trainer;
    TrainingStep? step;

    NativeTrainer(PromptModel model, TrainOptions options, List<EncodedExample> train, string init, PromptTrainer trainer) =>
        (this.model, this.options, this.train, this.init, this.trainer) = (model, options, train, init, trainer);

    public static NativeTrainer Create(PromptModel model, string? optionsJson, string trainJsonl)
    {
        var o = TrainerOptions.Parse(optionsJson);
        var examples = DataFile.ReadText(trainJsonl, "train_jsonl");
        // As TrainingRun resolves them: labels, the initialiser, then the length.
        var labels = o.Choices ?? RankClassifier.LabelSet(examples);
        string init = PromptInitializer.Resolve(o.Init, labels);
        int length = o.PromptLength ?? PromptInitializer.FileLength(init, model.DModel) ?? TrainOptions.DefaultPromptLength;
        // Before the prompt is made on the host: 5,000,000 rows were gigabytes there.
        TrainingRun.RefuseTooLarge(o, length, model.Config);
        var prompt = PromptInitializer.Create(init, length, model.Checkpoint, model.Tokenizer, labels, o.Seed);
        var enc = model.Encoder(o.MaxInputLength, o.MaxTargetLength);
        var encoded = examples.Select(enc.Encode).ToList();
        float dropout = o.Dropout ?? (float)model.Config.DropoutRate;
        var trainer = new PromptTrainer(model.Weights, prompt, o.Optimizer, dropout, o.Seed, o.ActivationMode, stepOffset: o.StepOffset);
        return new NativeTrainer(model, o, encoded, init, trainer);
    }

    /// <summary>Prepares the next step on its batch, unsubmitted.</summary>
    public void BeginStep()
    {
        if (trainer.Step >= options.Steps)
            throw new NativeArgumentException($"the trainer has taken its {options.Steps} steps (option steps)");
        var batch = TrainingRun.BatchIndices(trainer.Step, options.BatchSize, train.Count, options.Shuffle, options.Seed).Select(i => train[i]).ToList();
        step = trainer.BeginStep(batch, options.BatchSize);
    }

    TrainingStep Current => step ?? throw new NativeArgumentException("no step begun: call vkp_trainer_begin_step first");

    /// <summary>Submits the next slice of the step begun; whether it was the last.</summary>
    public (bool Submitted, ulong Semaphore, ulong Value) Advance(double budgetMs)
    {
        if (!(double.IsFinite(budgetMs) && budgetMs > 0))
            throw new NativeArgumentException($"gpu_budget_ms must be a finite number above 0, got {budgetMs}");
        var s = Current;
        if (s.IsSubmitted) throw new NativeArgumentException($"step {s.Number + 1} is submitted whole: poll it, then begin the next");
        // At least one tick, as a budget nothing fits in still submits one op; at most a day, so
        // that TimeSpan cannot overflow (no slice runs that long).
        var r = s.Advance(TimeSpan.FromTicks((long)Math.Clamp(budgetMs * TimeSpan.TicksPerMillisecond, 1, TimeSpan.TicksPerDay)));
        return (r.Submitted, r.Ticket.Semaphore.Handle, r.Ticket.Value);
    }

    /// <summary>The step's loss once its GPU work is done; null while it is not. Never blocks.</summary>
    public double? Poll()
    {
        var s = Current;
        if (!s.IsSubmitted) throw new NativeArgumentException($"step {s.Number + 1} still has slices to submit: vkp_trainer_advance it until VKP_OK");
        return s.IsComplete ? s.Loss : null;
    }

    /// <summary>A whole step, submitted at once and waited for.</summary>
    public double Step()
    {
        BeginStep();
        var s = Current;
        s.Submit();
        s.Wait();
        return s.Loss;
    }

    public void SaveAdapter(string dir) =>
        Adapter.Save(dir, trainer.Prompt(), model.Config, model.Checkpoint.Directory, init);

    public void Dispose() => trainer.Dispose();
}
