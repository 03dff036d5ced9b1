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
}
