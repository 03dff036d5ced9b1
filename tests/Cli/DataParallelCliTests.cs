using System.Globalization;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>Issue 20 item 3 through the CLI: <c>train --devices V,V</c> (two logical devices on the
/// test device) reproduces every golden case's prompt_after, also on three devices where the
/// golden batch of 2 leaves one without rows; grad, score and eval with --devices give what one
/// device gives; --device with --devices and a malformed list are refused in one line.</summary>
public sealed class DataParallelCliTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    static string Devices(int count) => string.Join(',', Enumerable.Repeat(CliRun.VulkanDevice, count));

    public static TheoryData<string, string, int> Cases()
    {
        var data = new TheoryData<string, string, int>();
        foreach (var model in Directory.GetDirectories(TestPaths.Golden).Order())
            foreach (var c in Directory.GetDirectories(Path.Combine(model, "cases")).Order())
                foreach (int devices in new[] { 2, 3 })
                    data.Add(Path.GetFileName(model), Path.GetFileName(c), devices);
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void TrainOnSeveralDevicesWritesTheGoldenPromptAfterKSteps(string model, string caseName, int devices) =>
        TrainCliTests.AssertTrainsGoldenCase(dir, model, caseName, "--devices", Devices(devices));

    static readonly string Model = Path.Combine(TestPaths.Golden, "tiny-v11");
    static readonly string Case = Path.Combine(Model, "cases", "p8");

    /// <summary>The case's first four lines, whose targets are labels eval can take as choices.</summary>
    string LabelledData()
    {
        var path = dir.File("labelled.jsonl");
        File.WriteAllLines(path, File.ReadLines(Path.Combine(Case, "data.jsonl")).Take(4));
        return path;
    }

    /// <summary>Score, eval and classify hand whole batches round the devices (score: six examples in
    /// batches of 2, three batches over two devices; eval: 4 inputs x 4 choices in batches of 3),
    /// so each example is scored as one device scores it: the same bits on devices of one kind.</summary>
    [Fact]
    public void ScoreAndEvalOnTwoDevicesPrintWhatOneDevicePrints()
    {
        string[] Score(params string[] devices) => CliRun.Of(["score", "--model", Model, "--data", Path.Combine(Case, "data.jsonl"),
            "--prompt", Path.Combine(Case, "prompt0.safetensors"), "--batch-size", "2", .. devices]).Succeeded().OutLines;
        var one = Score("--device", CliRun.VulkanDevice);
        Assert.Equal(6, one.Length);
        Assert.Equal(one, Score("--devices", Devices(2)));

        string labelled = LabelledData();
        string[] Eval(params string[] devices) => CliRun.Of(["eval", "--model", Model, "--data", labelled,
            "--prompt", Path.Combine(Case, "prompt0.safetensors"), "--choices", "entailment,not_entailment,True,False", "--batch-size", "3", .. devices]).Succeeded().OutLines;
        var evalOne = Eval("--device", CliRun.VulkanDevice);
        Assert.NotEmpty(evalOne);
        Assert.Equal(evalOne, Eval("--devices", Devices(2)));

        string[] Classify(params string[] devices) => CliRun.Of(["classify", "--model", Model, "--data", labelled,
            "--prompt", Path.Combine(Case, "prompt0.safetensors"), "--choices", "entailment,not_entailment,True,False", "--batch-size", "3", .. devices]).Succeeded().OutLines;
        var classifyOne = Classify("--device", CliRun.VulkanDevice);
        Assert.Equal(5, classifyOne.Length);   // four labels and the accuracy
        Assert.Equal(classifyOne, Classify("--devices", Devices(2)));
    }

    /// <summary>grad splits the file's six examples over four devices (2, 2, 1, 1 rows) and
    /// combines the shares: the golden loss and gradient, and one device's to rounding.</summary>
    [Fact]
    public void GradOnFourDevicesIsTheOneDeviceGradient()
    {
        (double Loss, float[] Gradient) Grad(string name, params string[] devices)
        {
            var output = dir.File(name);
            var r = CliRun.Of(["grad", "--model", Model, "--prompt", Path.Combine(Case, "prompt0.safetensors"), "--data", Path.Combine(Case, "data.jsonl"),
                               "--output", output, .. devices]).Succeeded();
            return (JsonDocument.Parse(Assert.Single(r.OutLines)).RootElement.GetProperty("loss").GetDouble(), CliRun.Tensor(output, "prompt_gradient"));
        }
        var one = Grad("one.safetensors", "--device", CliRun.VulkanDevice);
        var four = Grad("four.safetensors", "--devices", Devices(4));
        CliRun.AssertLogLikelihood(CliRun.GoldenLoss(Case), four.Loss, "loss");
        Assert.True(Math.Abs(four.Loss - one.Loss) <= 1e-6 * one.Loss, $"loss {four.Loss.ToString(CultureInfo.InvariantCulture)} vs one device's {one.Loss.ToString(CultureInfo.InvariantCulture)}");
        double golden = Check.NormRelativeError(CliRun.Tensor(Path.Combine(Case, "grad.safetensors"), "prompt_gradient"), four.Gradient);
        Assert.True(golden <= 1e-3, $"prompt gradient relative error {golden:E3} to golden > 1e-3");
        double err = Check.NormRelativeError(one.Gradient, four.Gradient);
        Assert.True(err <= 1e-5, $"prompt gradient relative error {err:E3} to one device > 1e-5");
    }

    /// <summary>A data-parallel run stopped after 2 steps and resumed to 4 (its checkpoint holds
    /// the first device's prompt and optimizer state) ends with the bits of an uninterrupted one,
    /// as on one device.</summary>
    [Fact]
    public void ResumedRunOnTwoDevicesEqualsTheUninterruptedOne()
    {
        string[] Train(string output, int steps, params string[] extra) => ["train", "--model", Model, "--train", Path.Combine(Case, "data.jsonl"), "--output", output,
            "--init", "file:" + Path.Combine(Case, "prompt0.safetensors"), "--steps", steps.ToString(CultureInfo.InvariantCulture), "--batch-size", "3",
            "--dropout", "0.1", "--seed", "5", "--save-every", "2", "--devices", Devices(2), .. extra];
        string whole = dir.File("whole"), resumed = dir.File("resumed");
        CliRun.Of(Train(whole, 4)).Succeeded();
        CliRun.Of(Train(resumed, 2)).Succeeded();
        CliRun.Of(Train(resumed, 4, "--resume")).Succeeded();
        Assert.Equal(CliRun.Tensor(Path.Combine(whole, Adapter.WeightsFile), PromptFile.TensorName),
                     CliRun.Tensor(Path.Combine(resumed, Adapter.WeightsFile), PromptFile.TensorName));
    }

    /// <summary>Validation during a data-parallel run (on the first device) logs what one device's
    /// run logs: training losses and validation losses within rounding, the same accuracies, and
    /// the best step the same (the prompt kept in best/, which accuracy picks).</summary>
    [Fact]
    public void ValidationOnTwoDevicesLogsWhatOneDeviceLogs()
    {
        string labelled = LabelledData();
        List<System.Text.Json.Nodes.JsonNode> Train(string output, params string[] devices)
        {
            CliRun.Of(["train", "--model", Model, "--train", Path.Combine(Case, "data.jsonl"), "--validation", labelled, "--output", output,
                       "--init", "file:" + Path.Combine(Case, "prompt0.safetensors"), "--steps", "4", "--batch-size", "3", "--eval-every", "2",
                       "--dropout", "0", "--choices", "entailment,not_entailment,True", .. devices]).Succeeded();
            return File.ReadLines(Path.Combine(output, TrainingDirectory.MetricsFile)).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!).ToList();
        }
        var one = Train(dir.File("one"), "--device", CliRun.VulkanDevice);
        var two = Train(dir.File("two"), "--devices", Devices(2));
        Assert.Equal(4, one.Count);
        Assert.Equal(4, two.Count);
        Assert.Equal(2, two.Count(n => n["val_loss"] is not null));
        for (int i = 0; i < one.Count; i++)
        {
            foreach (var key in new[] { "loss", "val_loss" })
                if (one[i][key] is { } expected)
                {
                    double e = expected.GetValue<double>(), got = two[i][key]!.GetValue<double>();
                    Assert.True(Math.Abs(got - e) <= 1e-5 * Math.Abs(e), $"step {i + 1} {key}: {got} on two devices vs {e} on one");
                }
            Assert.Equal(one[i]["val_accuracy"]?.GetValue<double>(), two[i]["val_accuracy"]?.GetValue<double>());
        }
        Assert.Equal(2, one.Count(n => n["val_accuracy"] is not null));
        string Best(string output) => Path.Combine(output, TrainingDirectory.BestDirectory, Adapter.WeightsFile);
        Assert.True(Check.NormRelativeError(CliRun.Tensor(Best(dir.File("one")), PromptFile.TensorName),
                                            CliRun.Tensor(Best(dir.File("two")), PromptFile.TensorName)) <= 1e-5, "the best prompt differs");
    }

    [Theory]
    [InlineData("train")]
    [InlineData("grad")]
    [InlineData("score")]
    [InlineData("eval")]
    [InlineData("classify")]
    public void DeviceWithDevicesAndEmptyEntriesAreRefused(string command)
    {
        string data = Path.Combine(Case, "data.jsonl"), prompt = Path.Combine(Case, "prompt0.safetensors");
        string[] given = command switch
        {
            "train" => ["--train", data, "--output", dir.File("out")],
            "grad" => ["--data", data, "--prompt", prompt, "--output", dir.File("grad.safetensors")],
            "score" => ["--data", data],
            _ => ["--data", LabelledData(), "--prompt", prompt, "--choices", "entailment,not_entailment,True"],
        };
        string[] Args(params string[] devices) => [command, "--model", Model, .. given, .. devices];
        var both = CliRun.Of(Args("--device", "cpu", "--devices", "cpu,cpu"));
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("--device and --devices name the devices twice", Assert.Single(CliRun.Lines(both.Err)), StringComparison.Ordinal);
        var empty = CliRun.Of(Args("--devices", "cpu,,cpu"));
        Assert.Equal(2, empty.ExitCode);
        Assert.Contains("has an empty entry", Assert.Single(CliRun.Lines(empty.Err)), StringComparison.Ordinal);
    }
}
