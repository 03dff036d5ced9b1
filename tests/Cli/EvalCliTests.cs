using System.Globalization;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Tests.Model;
using VkPrompt.Tests.Training;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>Issue 4: eval with three prompts reports each prompt's accuracy and the ensemble's,
/// and the ensemble is the majority vote of the individual predictions.</summary>
public sealed class EvalCliTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public void EnsembleAccuracyIsThatOfTheMajorityVote()
    {
        string model = EnsembleTask.Model;
        using var ckpt = T5Checkpoint.Open(model);
        int d = ckpt.Config.DModel;
        var examples = EnsembleTask.Examples();
        var data = dir.File("data.jsonl");
        File.WriteAllLines(data, examples.Select(e => JsonSerializer.Serialize(new Dictionary<string, string> { ["input"] = e.Input, ["target"] = e.Target! })));

        // One prompt in each format eval reads: .safetensors, .npy and a PEFT adapter directory;
        // the last one shorter, as an ensemble may mix lengths.
        var prompts = EnsembleTask.Prompts(d);
        prompts[2] = prompts[2][..(3 * d)];
        string[] paths = [dir.File("a.safetensors"), dir.File("b.npy"), dir.File("c")];
        SafetensorsWriter.Write(paths[0], [(PromptFile.TensorName, [EnsembleTask.PromptLength, d], prompts[0])]);
        PromptFile.SaveNpy(paths[1], prompts[1], EnsembleTask.PromptLength, d);
        Adapter.Save(paths[2], prompts[2], ckpt.Config, model, "random");

        var r = CliRun.Of("eval", "--model", model, "--data", data, "--choices", string.Join(',', EnsembleTask.Labels),
                          "--prompt", paths[0], "--prompt", paths[1], "--prompt", paths[2], "--device", "cpu").Succeeded();

        var tok = T5Tokenizer.Load(model);
        using var be = new CpuBackend();
        using var weights = new T5Weights(ckpt, be);
        using var scorer = new Scorer(weights);
        var inputs = examples.Select(e => tok.Encode(e.Input)).ToList();
        var choices = EnsembleTask.Labels.Select(l => tok.Encode(l)).ToList();
        var gold = examples.Select(e => Array.IndexOf(EnsembleTask.Labels, e.Target)).ToList();
        var individual = prompts.Select(p => RankClassifier.Predict(scorer, inputs, choices, PromptSet.Stack([p], ckpt.Config.DModel), batchSize: 8)[0]).ToArray();
        var vote = EnsembleTask.Majority(individual, choices.Count);

        string Accuracy(int[] predicted) => (predicted.Zip(gold).Count(x => x.First == x.Second) / (double)gold.Count).ToString("F4", CultureInfo.InvariantCulture);
        Assert.Equal(
            [.. paths.Select((p, i) => $"{p}: accuracy {Accuracy(individual[i])}"), $"ensemble of 3 (majority vote): accuracy {Accuracy(vote)}"],
            r.OutLines);
    }

    /// <summary>eval and classify --task read official SuperGLUE JSONL as train --task does: the
    /// same accuracy as the plain JSONL of its formatted text; a file without labels (a test split)
    /// is classified, and refused by eval and train (train before it trains).</summary>
    [Fact]
    public void EvalAndTrainReadSuperGlueFilesWithTask()
    {
        string model = ModelTestFiles.TinyV11;
        string rte = dir.File("rte.jsonl"), plain = dir.File("plain.jsonl"), test = dir.File("test.jsonl");
        File.WriteAllLines(rte, [
            """{"premise": "The cat sat on the mat.", "hypothesis": "A cat sat.", "label": "entailment", "idx": 0}""",
            """{"premise": "Dogs bark at night.", "hypothesis": "Cats bark.", "label": "not_entailment", "idx": 1}""",
            """{"premise": "It rained all day.", "hypothesis": "It was wet.", "label": "entailment", "idx": 2}""",
        ]);
        File.WriteAllLines(plain, SuperGlue.Read(rte, SuperGlue.Get("rte")).Select(e =>
            JsonSerializer.Serialize(new Dictionary<string, string> { ["input"] = e.Input, ["target"] = e.Target! })));
        File.WriteAllLines(test, ["""{"premise": "P.", "hypothesis": "H.", "idx": 0}"""]);
        string prompt = Path.Combine(model, "cases", "p8", "prompt0.safetensors");
        string[] Eval(string data, params string[] extra) => ["eval", "--model", model, "--prompt", prompt, "--data", data, "--device", "cpu", .. extra];

        var withTask = CliRun.Of(Eval(rte, "--task", "rte")).Succeeded();
        var converted = CliRun.Of(Eval(plain, "--choices", "entailment,not_entailment")).Succeeded();
        Assert.Equal(converted.Out.Replace(plain, rte, StringComparison.Ordinal), withTask.Out);

        // classify --task predicts for the test split, labels or not; on the labelled file its
        // accuracy is eval's.
        string[] Classify(string data) => ["classify", "--model", model, "--prompt", prompt, "--data", data, "--task", "rte", "--device", "cpu"];
        var predicted = CliRun.Of(Classify(test)).Succeeded();
        Assert.Contains(Assert.Single(predicted.OutLines), SuperGlue.Get("rte").Labels);
        var classified = CliRun.Of(Classify(rte)).Succeeded();
        Assert.Equal(withTask.OutLines[0].Split(' ')[^1], classified.OutLines[^1].Split(' ')[1]);

        // CB is scored by macro-F1 beside accuracy, over classify's own predictions.
        string cb = dir.File("cb.jsonl");
        string[] cbLabels = ["entailment", "contradiction", "neutral", "neutral"];
        File.WriteAllLines(cb, cbLabels.Select((l, i) => JsonSerializer.Serialize(new Dictionary<string, object>
            { ["premise"] = $"Premise number {i} is here.", ["hypothesis"] = $"Hypothesis {i}.", ["label"] = l, ["idx"] = i })));
        var cbPredicted = CliRun.Of(["classify", "--model", model, "--prompt", prompt, "--data", cb, "--task", "cb", "--device", "cpu"]).Succeeded().OutLines[..cbLabels.Length];
        var labelsOfCb = SuperGlue.Get("cb").Labels.ToList();
        int[] cbPred = cbPredicted.Select(l => labelsOfCb.IndexOf(l)).ToArray(), cbGold = cbLabels.Select(l => labelsOfCb.IndexOf(l)).ToArray();
        Assert.Equal(string.Create(CultureInfo.InvariantCulture,
                         $"{prompt}: accuracy {RankClassifier.Accuracy(cbPred, cbGold):F4}, macro-F1 {RankClassifier.MacroF1(cbPred, cbGold, 3):F4}"),
                     Assert.Single(CliRun.Of(Eval(cb, "--task", "cb")).Succeeded().OutLines));

        var unlabeled = CliRun.Of(Eval(test, "--task", "rte"));
        Assert.Equal(VkPrompt.Cli.Cli.UserError, unlabeled.ExitCode);
        Assert.EndsWith("line 1: no \"label\" (SuperGLUE's test files have none; train and evaluate on the train and val files)", Assert.Single(CliRun.Lines(unlabeled.Err)), StringComparison.Ordinal);
        var train = CliRun.Of("train", "--model", model, "--task", "rte", "--train", rte, "--validation", test, "--output", dir.File("out"), "--device", "cpu");
        Assert.Equal(VkPrompt.Cli.Cli.UserError, train.ExitCode);
        Assert.Contains("test.jsonl: line 1: no \"label\"", Assert.Single(CliRun.Lines(train.Err)), StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("out")), "nothing is written before the data is known to be usable");
    }
}
