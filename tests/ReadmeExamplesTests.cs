using System.Text.Json;
using System.Text.RegularExpressions;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Examples;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Tests.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests;

/// <summary>README.md's C# samples are <see cref="ReadmeExamples"/>'s code, letter for letter,
/// and compute the golden values: on a device a host owns, several tasks in one batch, training.</summary>
public sealed class ReadmeExamplesTests(GpuFixture f) : GpuTest(f)
{
    static string CaseDir(string name) => Path.Combine(ModelTestFiles.TinyV11, "cases", name);

    [Fact]
    public void EveryReadmeSampleIsAnExampleHereAndEveryExampleIsInTheReadme()
    {
        var readme = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "README.md"));
        var samples = Regex.Matches(readme, @"^```csharp\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)
                           .Select(m => Dedent(m.Groups[1].Value)).ToList();
        var source = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "tests", "ReadmeExamples", "ReadmeExamples.cs"));
        var examples = Regex.Matches(source, @"^[ \t]*// README: (\S+)\n(.*?)^[ \t]*// README end", RegexOptions.Singleline | RegexOptions.Multiline)
                            .ToDictionary(m => m.Groups[1].Value, m => Dedent(m.Groups[2].Value));
        Assert.Equal(4, examples.Count);
        Assert.NotEmpty(samples);
        foreach (var sample in samples)
            Assert.True(examples.ContainsValue(sample), $"README.md's sample\n{sample}\nis none of tests/ReadmeExamples/ReadmeExamples.cs's examples; copy it there or the change from there");
        foreach (var (name, code) in examples)
            Assert.True(samples.Contains(code), $"example '{name}' of tests/ReadmeExamples/ReadmeExamples.cs is not in README.md as it is there");
    }

    /// <summary>The lines with their common indentation removed, trailing blanks dropped.</summary>
    static string Dedent(string text)
    {
        var lines = text.TrimEnd().Split('\n').Select(l => l.TrimEnd()).ToList();
        int indent = lines.Where(l => l.Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return string.Join('\n', lines.Select(l => l.Length == 0 ? l : l[indent..]));
    }

    [Fact]
    public void ScoringOnAHostsDeviceGivesTheGoldenScores()
    {
        var host = new TestHost();
        ScoreResult[] scores;
        try
        {
            scores = ReadmeExamples.ScoreOnHostDevice(host.Vk.Context.GetProcAddress("vkGetInstanceProcAddr"), host.Instance, host.PhysicalDevice, host.Device, host.QueueFamily,
                                                      new object(), ModelTestFiles.TinyV11,
                                                      Path.Combine(CaseDir("p8"), "data.jsonl"), Path.Combine(CaseDir("p8"), "prompt0.safetensors"));
        }
        finally { host.Dispose(); }
        var expected = JsonSerializer.Deserialize<double[]>(File.ReadAllText(Path.Combine(CaseDir("p8"), "scores.json")))!;
        Assert.Equal(expected.Length, scores.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(scores[i].LogProb - expected[i]) <= 1e-4 * Math.Abs(expected[i]), $"example {i}: {scores[i].LogProb} against golden {expected[i]}");
        Assert.True(host.Errors.IsEmpty, $"{host.Errors.Count} validation error(s) on the host's device:\n" + string.Join("\n", host.Errors));
    }

    /// <summary>Training in slices between a host's frames takes the golden case's three steps:
    /// its losses and final prompt are the golden ones, and each step spanned frames rather than
    /// blocking one (how much a slice holds against its budget is SubmissionTests').</summary>
    [Fact]
    public void TrainingBetweenFramesFollowsTheGoldenSteps()
    {
        int frames = 0;
        var (losses, prompt) = ReadmeExamples.TrainBetweenFrames(Ctx, ModelTestFiles.TinyV11, Path.Combine(CaseDir("p8"), "data.jsonl"),
                                                       Path.Combine(CaseDir("p8"), "prompt0.safetensors"),
                                                       () => { Thread.Sleep(1); return ++frames < 60_000; });   // a frame takes time, as a host's would
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(CaseDir("p8"), "train.json"))).RootElement
                                 .GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(golden.Length, losses.Count);
        for (int s = 0; s < golden.Length; s++)
            Assert.True(Math.Abs(losses[s] - golden[s]) <= 1e-3 + 1e-4 * golden[s], $"step {s}: loss {losses[s]} against golden {golden[s]}");
        double err = Check.NormRelativeError(VkPrompt.Tests.Cli.CliRun.Tensor(Path.Combine(CaseDir("p8"), "prompt_after.safetensors"), "prompt_embeddings"), prompt);
        Assert.True(err <= 1e-3, $"prompt after {golden.Length} steps: relative error {err:E3} > 1e-3");
        Assert.True(frames > 2 * golden.Length, $"{frames} frames for {golden.Length} steps: the steps blocked the frames");
    }

    /// <summary>Two tasks' prompts of different lengths (8 and 128 rows) in one batch give each
    /// example what the CPU reference gives it scored alone with its own prompt, and the rank
    /// classification picks the choice the reference scores higher.</summary>
    [Fact]
    public void SeveralTasksInOneBatchScoreAsEachAloneOnTheReference()
    {
        string rte = Path.Combine(CaseDir("p8"), "prompt0.safetensors"), boolq = Path.Combine(CaseDir("p128"), "prompt0.safetensors");
        var options = EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null };
        var (scores, labels) = ReadmeExamples.SeveralTasksInOneBatch(options, ModelTestFiles.TinyV11, rte, boolq);

        using var reference = PromptModel.OpenOnCpu(ModelTestFiles.TinyV11, WeightPrecision.Bf16);
        var encoder = reference.Encoder();
        double Alone(string prompt, string input, string target) =>
            reference.Score([encoder.Encode(input, target)], reference.Prompts([reference.LoadPrompt(prompt)]))[0].LogProb;
        const string rteInput = "rte sentence1: The license grants permission to copy and distribute. sentence2: Copying is allowed.";
        double[] expected =
        [
            Alone(rte, rteInput, "entailment"),
            Alone(boolq, "boolq question: is redistribution permitted? passage: Redistribution is permitted.", "True"),
        ];
        Assert.Equal(2, scores.Length);
        for (int i = 0; i < 2; i++)
            Assert.True(Math.Abs(scores[i].LogProb - expected[i]) <= 1e-3 * Math.Abs(expected[i]), $"example {i}: {scores[i].LogProb} against {expected[i]} alone on the CPU");
        double entailment = expected[0], notEntailment = Alone(rte, rteInput, "not_entailment");
        Assert.True(Math.Abs(entailment - notEntailment) > 1e-2, "the two choices score too alike to tell a wrong classification");
        Assert.Equal([entailment > notEntailment ? 0 : 1], labels);
    }

    /// <summary>Three Adafactor steps from the golden prompt take the golden losses and end at the
    /// golden prompt; the adapter written holds the last prompt (no validation: no best one).</summary>
    [Fact]
    public void TrainingOnTheCpuFollowsTheGoldenSteps()
    {
        using var dir = new TempDir();
        var output = dir.File("run");
        var (losses, result) = ReadmeExamples.TrainOnCpu(ModelTestFiles.TinyV11, Path.Combine(CaseDir("p8"), "data.jsonl"),
                                                         Path.Combine(CaseDir("p8"), "prompt0.safetensors"), output);
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(CaseDir("p8"), "train.json"))).RootElement
                                 .GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(golden.Length, losses.Count);
        for (int s = 0; s < golden.Length; s++)
            Assert.True(Math.Abs(losses[s] - golden[s]) <= 1e-3 + 1e-4 * golden[s], $"step {s}: loss {losses[s]} against golden {golden[s]}");

        using var after = SafetensorsFile.Open(Path.Combine(CaseDir("p8"), "prompt_after.safetensors"));
        var expected = new float[result.FinalPrompt.Length];
        after.ReadFloat32("prompt_embeddings", expected);
        double err = Check.NormRelativeError(expected, result.FinalPrompt);
        Assert.True(err <= 1e-3, $"prompt after {golden.Length} steps: relative error {err:E3} > 1e-3");
        Assert.Equal(result.FinalPrompt, PromptFile.Load(output, result.FinalPrompt.Length / 8, out _));
    }
}
