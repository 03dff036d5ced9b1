using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Tokenization;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

/// <summary>
/// The main job on a fresh machine with nothing downloaded: make (once) a tiny random-weight T5
/// with the bundled tokenizer, tune a soft prompt on the bundled synthetic sentiment task, and
/// evaluate it against the same model without a prompt.
/// </summary>
internal static class DemoCommand
{
    /// <summary>Bumped whenever the demo model's recipe changes, so an old cached copy is not reused.</summary>
    const string ModelVersion = "v1";

    public static Command Create()
    {
        var device = Cli.DeviceOption();
        var attention = ModelOptions.Attention();
        var output = new Option<string>("--output", "-o") { HelpName = "DIR", Description = "Where the adapter, metrics and chart go; a run there from an earlier demo is replaced, any other run refused. Default: ./vkprompt-demo.", DefaultValueFactory = _ => "vkprompt-demo" };
        var steps = new Option<int>("--steps") { Description = "Training steps (about a minute on lavapipe with 2 cores). Default: 240.", DefaultValueFactory = _ => 240 };
        var command = new Command("demo",
            "Prompt tuning end to end with nothing to download: builds a tiny random-weight T5 (once, cached), trains a 20-token soft prompt on the bundled " +
            "synthetic sentiment task with the paper's Adafactor settings, and compares validation accuracy with and without the prompt.")
        {
            device, attention, output, steps,
        };
        command.SetAction(parse =>
        {
            var console = Cli.Console(parse);
            string assets = Path.Combine(AppContext.BaseDirectory, "demo");
            if (!File.Exists(Path.Combine(assets, "spiece.model")))
                throw new UsageException($"the bundled demo files are missing from {assets}; rebuild vkprompt");
            string modelDir = DemoModel(assets, console.WriteLine);
            string outDir = Path.GetFullPath(parse.GetValue(output)!);
            if (HoldsAnotherRun(outDir, modelDir))
                throw new UsageException($"{outDir} holds a training run that is not an earlier demo's; the demo replaces only its own: choose another --output");
            string train = Path.Combine(assets, "train.jsonl"), validation = Path.Combine(assets, "validation.jsonl");
            console.WriteLine("The model is a tiny T5 (d_model 128, 2+2 layers) with RANDOM weights, made on this machine: it knows no language.");
            console.WriteLine("What you see is the mechanism: a 20-token soft prompt, trained alone while every model weight stays frozen, steers it to the task.");
            console.WriteLine();

            var labels = new[] { "positive", "negative" };
            var settings = new TrainSettings(modelDir, train, validation, outDir, new SessionSettings([parse.GetValue(device)!], ModelOptions.ReadAttention(parse, attention)), null,
                new TrainOptions
                {
                    PromptLength = 20, Steps = ModelOptions.Positive(parse, steps), BatchSize = 8, EvalEvery = 60, SaveEvery = 120,
                    Init = "class", Dropout = 0, Choices = labels, Overwrite = true,
                });
            int rc = TrainCommand.Run(parse, settings, console);
            if (rc != Cli.Ok) return rc;

            console.WriteLine();
            using (var s = new ModelSession(modelDir, settings.Session, ModelOptions.Log(parse)))
            {
                var val = DataFile.Read(validation);
                var inputs = val.Select(e => s.Model.Tokenizer.Encode(e.Input)).ToList();
                var gold = val.Select(e => Array.IndexOf(labels, e.Target!)).ToList();
                var prompt = s.Model.Prompts([s.Model.LoadPrompt(outDir)]);
                double without = RankClassifier.Accuracy(s.Model.Classify(inputs, labels, null, 16)[0], gold);
                double with = RankClassifier.Accuracy(s.Model.Classify(inputs, labels, prompt, 16)[0], gold);
                console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"validation accuracy (rank classification, {val.Count} examples): without prompt {without:P1}, with the trained prompt {with:P1}"));
            }
            console.WriteLine();
            console.WriteLine("With a real checkpoint (a local copy of google/t5-base-lm-adapt) and SuperGLUE data:");
            console.WriteLine($"  ./vkprompt train --model t5-base-lm-adapt --task rte --train rte/train.jsonl --validation rte/val.jsonl --output rte-prompt");
            console.WriteLine($"  ./vkprompt eval --model t5-base-lm-adapt --prompt rte-prompt --task rte --data rte/val.jsonl");
            return Cli.Ok;
        });
        return command;
    }

    /// <summary>Whether <paramref name="outDir"/> holds a run of another model than the demo's:
    /// someone's work, which the demo must not replace as it replaces its own earlier runs.</summary>
    static bool HoldsAnotherRun(string outDir, string modelDir)
    {
        if (!File.Exists(Path.Combine(outDir, TrainingDirectory.CheckpointFile)) && !File.Exists(Path.Combine(outDir, Adapter.WeightsFile))) return false;
        try { return JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, Adapter.ConfigFile)))?["base_model_name_or_path"]?.GetValue<string>() != modelDir; }
        catch (Exception e) when (e is IOException or JsonException or InvalidOperationException) { return true; }
    }

    static string DemoModel(string assets, Action<string> log)
    {
        var cacheRoot = EnvironmentSettings.PipelineCacheDirectory(Environment.GetEnvironmentVariable) ?? Path.GetTempPath();
        string dir = Path.Combine(cacheRoot, $"demo-model-{ModelVersion}");
        if (File.Exists(Path.Combine(dir, "model.safetensors"))) return dir;
        log($"making the demo model in {dir} (once)");
        var tok = T5Tokenizer.Load(assets);
        var cfg = RandomT5.DemoConfig(tok.VocabSize);
        // Written beside the final name and renamed, so an interrupted run never leaves half a model.
        string tmp = dir + $".{Environment.ProcessId}.tmp";
        RandomT5.Write(tmp, cfg, seed: 1, spieceModelPath: Path.Combine(assets, "spiece.model"));
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.Move(tmp, dir);
        return dir;
    }
}
