using System.Text.Json;
using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>The library's entry point: a model opened on a borrowed context or on the CPU computes
/// the golden values, a training run reports what each step trained on, and library errors name
/// the library's settings while a front end can spell them its own way.</summary>
public sealed class PromptModelTests(GpuFixture f) : GpuTest(f)
{
    readonly TempDir dir = new();

    public override void Dispose()
    {
        dir.Dispose();
        base.Dispose();
    }

    static string CaseDir => Path.Combine(ModelTestFiles.TinyV11, "cases", "p8");

    /// <summary>Scores come back in input order although the batches are cut shortest first, and
    /// the borrowed context outlives the model.</summary>
    [Theory, InlineData("cpu"), InlineData("vulkan")]
    public void ScoresAreTheGoldenOnesInInputOrder(string backend)
    {
        using (var model = backend == "cpu" ? PromptModel.OpenOnCpu(ModelTestFiles.TinyV11) : PromptModel.Open(ModelTestFiles.TinyV11, Ctx))
        {
            var enc = model.Encoder(100_000, 100_000);
            var examples = DataFile.Read(Path.Combine(CaseDir, "data.jsonl")).Select(enc.Encode).ToList();
            Assert.NotEqual(examples.Select(e => e.InputIds.Length).Order(), examples.Select(e => e.InputIds.Length));
            var prompts = model.Prompts([model.LoadPrompt(Path.Combine(CaseDir, "prompt0.safetensors"))]);
            var expected = JsonSerializer.Deserialize<double[]>(File.ReadAllText(Path.Combine(CaseDir, "scores.json")))!;
            var scores = model.Score(examples, prompts, batchSize: 3);
            Assert.Equal(expected.Length, scores.Length);
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(scores[i].LogProb - expected[i]) <= 1e-4 * Math.Abs(expected[i]), $"example {i}: {scores[i].LogProb} against {expected[i]}");
        }
        // Still usable: the model borrowed it.
        using var buffer = GpuBuffer.From<float>(Ctx, [1f]);
        Assert.Equal([1f], buffer.Download<float>());
    }

    /// <summary>Each step reports the input and target tokens of its batch, eos included, in
    /// its report and in metrics.jsonl: batch s holds examples (s·B + i) mod N unshuffled.</summary>
    [Fact]
    public void TrainingReportsTheTokensOfEachStep()
    {
        using var model = PromptModel.OpenOnCpu(ModelTestFiles.TinyV10Bf16);
        var data = DataFile.Read(Path.Combine(ModelTestFiles.TinyV10Bf16, "cases", "p5", "data.jsonl"));
        var options = new TrainOptions { PromptLength = 2, Steps = 3, BatchSize = 2, Shuffle = false, Dropout = 0, Init = "random" };
        var run = model.Train(data, null, options, dir.File("run"));
        var reports = new List<StepReport>();
        run.OnStep = reports.Add;
        run.Run();

        int Tokens(Example e) => model.Tokenizer.Encode(e.Input).Length + model.Tokenizer.Encode(e.Target!).Length;
        var expected = Enumerable.Range(0, 3).Select(s => Tokens(data[2 * s % data.Count]) + Tokens(data[(2 * s + 1) % data.Count])).ToList();
        Assert.All(expected, t => Assert.True(t > 2));
        Assert.Equal(expected, reports.Select(r => r.Tokens));
        var logged = File.ReadLines(Path.Combine(dir.File("run"), TrainingDirectory.MetricsFile)).Select(l => JsonNode.Parse(l)!["tokens"]!.GetValue<int>());
        Assert.Equal(expected, logged);
    }

    /// <summary>The library names its own settings; <see cref="TrainingException.Describe"/>
    /// names them as a front end asks, and only them (a path is never renamed).</summary>
    [Fact]
    public void ErrorsNameTheLibrarysSettingsAndDescribeRenamesThem()
    {
        var output = dir.File("run");
        var both = Assert.Throws<TrainingOptionException>(() => new TrainingDirectory(output).Check(new TrainOptions { Resume = true, Overwrite = true }));
        Assert.Equal("TrainOptions.Resume continues the run in the output directory and TrainOptions.Overwrite replaces it: give one", both.Message);

        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, TrainingDirectory.CheckpointFile), "");
        // A run's directory: without the manifest it would be refused as someone else's.
        File.WriteAllText(Path.Combine(output, TrainingDirectory.ManifestFile), """{"files": ["checkpoint.safetensors"]}""");
        var earlier = Assert.Throws<TrainingOptionException>(() => new TrainingDirectory(output).Check(new TrainOptions()));
        Assert.Equal($"{output} holds an earlier run (checkpoint.safetensors); continue it with TrainOptions.Resume, replace it with TrainOptions.Overwrite, or choose another output directory",
                     earlier.Message);
        Assert.Equal($"{output} holds an earlier run (checkpoint.safetensors); continue it with [Resume], replace it with [Overwrite], or choose another [output directory]",
                     earlier.Describe(s => $"[{s.Name.Replace("TrainOptions.", "")}]"));

        var task = Assert.Throws<TrainingOptionException>(() => SuperGlue.Get("TrainOptions.Resume"));
        Assert.Equal("unknown <task> 'TrainOptions.Resume'; supported: boolq, cb, rte, wic, copa", task.Describe(s => $"<{s.Name}>"));
    }
}
