using System.Globalization;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// The output directory of a training run and its policy: what a run writes there, when a run may
/// write there at all (an earlier run needs <see cref="TrainOptions.Resume"/> or
/// <see cref="TrainOptions.Overwrite"/>), and the checkpoint a resumed run continues from.
/// </summary>
internal sealed class TrainingDirectory(string path)
{
    /// <summary>The resumable state: prompt, optimizer state, step, best validation score.</summary>
    public const string CheckpointFile = "checkpoint.safetensors";
    /// <summary>One JSON object per step (<see cref="MetricsLog"/>).</summary>
    public const string MetricsFile = "metrics.jsonl";
    /// <summary>The adapter of the best prompt on validation so far.</summary>
    public const string BestDirectory = "best";

    /// <summary>The directory.</summary>
    public string Path => path;
    internal string Checkpoint => System.IO.Path.Combine(path, CheckpointFile);
    internal string Metrics => System.IO.Path.Combine(path, MetricsFile);
    internal string Best => System.IO.Path.Combine(path, BestDirectory);

    /// <summary>Throws unless a run may write here as <paramref name="options"/> ask: a directory
    /// that holds an earlier run needs Resume or Overwrite (not both). Cheap, so front ends call
    /// it before loading a model; <see cref="TrainingRun.Run"/> calls it too.</summary>
    public void Check(TrainOptions options)
    {
        if (options.Resume && options.Overwrite)
            throw new TrainingOptionException($"{Setting.Resume} continues the run in the output directory and {Setting.Overwrite} replaces it: give one");
        if (File.Exists(path))
            throw new TrainingOptionException($"{Setting.OutputDirectory} {path} is a file; it names the directory the adapter, checkpoint and metrics go to");
        if (options.Resume || options.Overwrite) return;
        if (new[] { CheckpointFile, Adapter.WeightsFile }.FirstOrDefault(f => File.Exists(System.IO.Path.Combine(path, f))) is { } earlier)
            throw new TrainingOptionException($"{path} holds an earlier run ({earlier}); continue it with {Setting.Resume}, replace it with {Setting.Overwrite}, or choose another {Setting.OutputDirectory}");
    }

    /// <summary>Checks, clears an earlier run where <see cref="TrainOptions.Overwrite"/> says so,
    /// and creates the directory.</summary>
    internal void Prepare(TrainOptions options)
    {
        Check(options);
        if (options.Overwrite) Clear();
        Directory.CreateDirectory(path);
    }

    /// <summary>Deletes what a run writes here, and nothing else.</summary>
    internal void Clear()
    {
        if (!Directory.Exists(path)) return;
        foreach (var f in new[] { CheckpointFile, MetricsFile, Adapter.WeightsFile, Adapter.ConfigFile, Adapter.NpyFile })
            File.Delete(System.IO.Path.Combine(path, f));
        if (Directory.Exists(Best)) Directory.Delete(Best, recursive: true);
    }

    /// <summary>The prompt length of the checkpoint here, if there is one: what a resumed run
    /// trains unless told otherwise.</summary>
    internal int? CheckpointPromptLength()
    {
        if (!File.Exists(Checkpoint)) return null;
        using var f = SafetensorsFile.Open(Checkpoint);
        return f.Tensors.TryGetValue("prompt", out var info) && info.Shape.Length == 2 ? checked((int)info.Shape[0]) : null;
    }

    /// <summary>The checkpoint here, checked against the run that would continue it; null where
    /// there is none.</summary>
    internal TrainingCheckpoint? ReadCheckpoint(int dModel, int promptLength, WeightPrecision precision)
    {
        if (!File.Exists(Checkpoint)) return null;
        using var f = SafetensorsFile.Open(Checkpoint);
        foreach (var name in new[] { "prompt", "optimizer_state" })
            if (!f.Tensors.ContainsKey(name)) throw new ModelFormatException(Checkpoint, $"has no tensor {name}: not a VkPrompt training checkpoint");
        // A checkpoint of another model or prompt length would be read as a prompt of the wrong
        // shape (its floats regrouped into other rows) and saved over the adapter.
        var shape = f.Tensors["prompt"].Shape;
        if (shape.Length != 2 || shape[1] != dModel)
            throw new TrainingOptionException($"{Checkpoint} holds a prompt of shape [{string.Join(", ", shape)}] but the model's d_model is {dModel}: it was trained on another model");
        if (shape[0] != promptLength)
            throw new TrainingOptionException($"{Checkpoint} holds a {shape[0]}-token prompt; resume with {Setting.PromptLength} {shape[0]} (now {promptLength})");
        // Another weight precision computes other numbers: the promise of a bit-identical
        // continuation only holds with the one the run started with.
        if (f.Metadata.TryGetValue("precision", out var p) && p != precision.Name())
            throw new TrainingOptionException($"{Checkpoint} was trained with {Setting.WeightPrecision} {p}; resume with the same precision (now {precision.Name()})");
        return new TrainingCheckpoint(ReadAll(f, "prompt"), ReadAll(f, "optimizer_state"),
                                      int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture), BestPrompt.Read(f.Metadata));
    }

    internal void WriteCheckpoint(PromptTrainer trainer, BestPrompt best, int seed, WeightPrecision precision)
    {
        var prompt = trainer.Prompt();
        var state = trainer.OptimizerState();
        SafetensorsWriter.Write(Checkpoint,
            [("prompt", [trainer.PromptLength, trainer.Dim], prompt), ("optimizer_state", [state.Length], state)],
            new Dictionary<string, string>(best.Metadata())
            {
                ["step"] = trainer.Step.ToString(CultureInfo.InvariantCulture),
                ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
                ["precision"] = precision.Name(),
            });
    }

    static float[] ReadAll(SafetensorsFile f, string name)
    {
        var info = f.Tensors[name];
        var data = new float[info.Shape.Aggregate(1L, (a, b) => a * b)];
        f.ReadFloat32(name, data);
        return data;
    }
}

/// <summary>What a checkpoint holds for the run that continues it.</summary>
internal sealed record TrainingCheckpoint(float[] Prompt, float[] OptimizerState, int Step, BestPrompt Best);
