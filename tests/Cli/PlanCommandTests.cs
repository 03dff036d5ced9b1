using System.Globalization;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary><c>vkprompt plan</c>: issue 20's acceptance command for T5-XXL, its JSON, devices
/// and errors. That the plan is the measured peak of real runs is MemoryPlanTests'.</summary>
public sealed class PlanCommandTests
{
    static readonly string[] Acceptance = ["plan", "--shape", "t5-xxl", "--precision", "int8", "--batch-size", "8", "--input-length", "512"];

    static JsonElement Json(params string[] args) => JsonDocument.Parse(CliRun.Of([.. args, "--json"]).Succeeded().Out).RootElement;

    static long Bytes(JsonElement device, string work, string part) => device.GetProperty(work).GetProperty(part).GetInt64();

    /// <summary>T5-XXL's parameters from its published shape, counted here by hand: the embedding
    /// and the untied LM head, per encoder block self-attention, a gated feed-forward and two
    /// norms, per decoder block self- and cross-attention, the feed-forward and three norms, the
    /// two final norms and the two position-bias tables. Matrices (stored at the weight
    /// precision) apart from the rest (fp32 always).</summary>
    static (long Matrices, long Fp32) XxlParameters()
    {
        long d = 4096, ff = 10240, inner = 64 * 64, vocab = 32128, layers = 24;
        long matrices = 2 * vocab * d + layers * (4 * d * inner + 3 * d * ff) + layers * (8 * d * inner + 3 * d * ff);
        long rest = layers * 2 * d + layers * 3 * d + 2 * d + 2 * 32 * 64;
        return (matrices, rest);
    }

    /// <summary>The acceptance command prints a peak allocating little on the host (44 GB of fp32
    /// weights are only counted, never allocated); its weights are T5-XXL's parameter count in
    /// bytes at int8 (plus a scale a row), a quarter of fp32's, and the peak adds the prompt, the
    /// optimizer and the step's work to them.</summary>
    [Fact]
    public void T5XxlAtInt8PrintsAPeakAQuarterOfFp32sWeights()
    {
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var r = CliRun.Of(Acceptance).Succeeded();
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - allocated, 0, 64L << 20);
        Assert.Contains("t5-xxl: 11.135B parameters; int8 weights; batch 8, input 512 + prompt 100, target 128 tokens", r.Out, StringComparison.Ordinal);
        Assert.Contains(r.OutLines, l => l.StartsWith("│ training step", StringComparison.Ordinal) && l.Contains("GiB", StringComparison.Ordinal));

        var (matrices, fp32Rest) = XxlParameters();
        var int8 = Json(Acceptance).GetProperty("devices")[0];
        var fp32 = Json([.. Acceptance.Select(a => a == "int8" ? "fp32" : a)]).GetProperty("devices")[0];
        long int8Weights = Bytes(int8, "training", "weightsBytes"), fp32Weights = Bytes(fp32, "training", "weightsBytes");
        // Each buffer rounds up to 256 bytes: a few hundred buffers, well under a MiB.
        Assert.InRange(fp32Weights - 4 * (matrices + fp32Rest), 0, 1L << 20);
        Assert.InRange(int8Weights - (matrices + 4 * fp32Rest), 0, 16L << 20); // a 4-byte scale a row: about 10 MB
        Assert.InRange(int8Weights / (double)fp32Weights, 0.25, 0.251);
        foreach (var work in new[] { "training", "trainingWithValidation", "scoring" })
            Assert.Equal(Bytes(int8, work, "peakBytes"),
                         Bytes(int8, work, "weightsBytes") + Bytes(int8, work, "promptAndOptimizerBytes") + Bytes(int8, work, "workBytes"));
        // The prompt, Adafactor's update and its second moment, 100 x 4096 floats each (a prompt
        // of fewer than 128 rows is not factored), and the step counter; 256 bytes a buffer at most.
        Assert.InRange(Bytes(int8, "training", "promptAndOptimizerBytes") - (3 * 100 * 4096 * 4 + 4), 0, 3 * 256);
        Assert.True(Bytes(int8, "training", "workBytes") > Bytes(int8, "scoring", "workBytes"));
        Assert.True(Bytes(int8, "trainingWithValidation", "peakBytes") > Bytes(int8, "training", "peakBytes"));
        // The activations do not depend on how the weights are stored.
        Assert.Equal(Bytes(fp32, "training", "workBytes"), Bytes(int8, "training", "workBytes"));
    }

    /// <summary>Recomputing and fusing attention need less; the JSON names the settings.</summary>
    [Fact]
    public void RecomputeAndFusedAttentionPlanLess()
    {
        string[] args = ["plan", "--shape", "t5-base", "--batch-size", "4", "--input-length", "300", "--target-length", "9", "--device", "cpu", "--attention", "unfused"];
        var stored = Json(args);
        Assert.Equal((304, 16, "unfused", false), (stored.GetProperty("paddedInputLength").GetInt32(), stored.GetProperty("paddedTargetLength").GetInt32(),
                                                   stored.GetProperty("attention").GetString(), stored.GetProperty("recompute").GetBoolean()));
        long Work(JsonElement plan) => Bytes(plan.GetProperty("devices")[0], "training", "workBytes");
        long storedWork = Work(stored);
        Assert.True(Work(Json([.. args, "--recompute"])) < storedWork);
        Assert.True(Work(Json([.. args.Select(a => a == "unfused" ? "fused" : a)])) < storedWork);
        Assert.True(Work(Json([.. args, "--dropout", "0"])) < storedWork);
    }

    /// <summary>--device cpu has no heap: the plan prints without the comparison, but a memory cap
    /// is still compared.</summary>
    [Fact]
    public void TheCpuHasNoHeapButACapIsCompared()
    {
        string[] args = ["plan", "--model", ModelTestFiles.TinyV11, "--batch-size", "2", "--input-length", "20", "--device", "cpu"];
        var r = CliRun.Of(args).Succeeded();
        Assert.Contains("no heap known", r.Out, StringComparison.Ordinal);
        var device = Json(args).GetProperty("devices")[0];
        Assert.Equal(JsonValueKind.Null, device.GetProperty("heapBytes").ValueKind);
        Assert.Equal(JsonValueKind.Null, device.GetProperty("training").GetProperty("fits").ValueKind);
        var capped = Json([.. args, "--memory-cap", "12MiB"]).GetProperty("devices")[0];
        Assert.True(capped.GetProperty("scoring").GetProperty("fits").GetBoolean());
        Assert.False(capped.GetProperty("training").GetProperty("fits").GetBoolean());
        // The weights as T5Weights counts them, each buffer rounded up to 256 bytes.
        long weights = T5Weights.Bytes(T5Config.Load(Path.Combine(ModelTestFiles.TinyV11, "config.json")), WeightPrecision.Fp32);
        Assert.InRange(Bytes(device, "training", "weightsBytes") - weights, 0, 255L * 64);
    }

    /// <summary>Two logical devices on one Vulkan device split a batch of 7 as 4 and 3, each holding
    /// the whole model; their heap is one, so each compares both peaks together with it.</summary>
    [Fact]
    public void DevicesListedTwiceShareTheBatchAndTheHeap()
    {
        string device = CliRun.VulkanDevice;
        var plan = Json("plan", "--model", ModelTestFiles.TinyV11, "--batch-size", "7", "--input-length", "20", "--devices", $"{device},{device}");
        var devices = plan.GetProperty("devices");
        Assert.Equal([4, 3], devices.EnumerateArray().Select(d => d.GetProperty("rows").GetInt32()));
        var (first, second) = (devices[0], devices[1]);
        Assert.Equal(Bytes(first, "training", "weightsBytes"), Bytes(second, "training", "weightsBytes"));
        Assert.True(Bytes(first, "training", "workBytes") > Bytes(second, "training", "workBytes"));
        long both = Bytes(first, "training", "peakBytes") + Bytes(second, "training", "peakBytes");
        Assert.Equal(both, Bytes(first, "training", "physicalDevicePeakBytes"));
        Assert.Equal(both, Bytes(second, "training", "physicalDevicePeakBytes"));
        Assert.True(first.GetProperty("heapBytes").GetInt64() > 0);
        Assert.True(first.GetProperty("training").GetProperty("fits").GetBoolean());
    }

    /// <summary>A recorded device list (another machine's) plans for its devices: T5-XXL at int8
    /// trains batch 8 on an H100's 80 GB, batch 32 not.</summary>
    [Fact]
    public void ARecordedDeviceListPlansForItsDevices()
    {
        var devices = Path.Combine(TestPaths.RepoRoot, "docs", "results", "h100-2026-11-26c", "devices.json");
        var device = Json([.. Acceptance, "--capabilities", devices, "--device", "0"]).GetProperty("devices")[0];
        Assert.Contains("H100", device.GetProperty("name").GetString(), StringComparison.Ordinal);
        long heap = device.GetProperty("heapBytes").GetInt64();
        Assert.InRange(heap, 70L << 30, 90L << 30);
        Assert.True(device.GetProperty("training").GetProperty("fits").GetBoolean());
        Assert.True(Bytes(device, "training", "peakBytes") <= heap);
        var larger = Json([.. Acceptance.Select(a => a == "8" ? "32" : a), "--capabilities", devices, "--device", "0"]).GetProperty("devices")[0];
        Assert.False(larger.GetProperty("training").GetProperty("fits").GetBoolean());
        Assert.True(Bytes(larger, "training", "peakBytes") > heap);
        Assert.True(larger.GetProperty("scoring").GetProperty("fits").GetBoolean());
    }

    /// <summary>T5-XXL at bf16 split in four stages on the recorded H100 (four logical devices on
    /// it), as docs/scaling.md plans it for 4 cards: four stages of consecutive layers covering the
    /// 48; their weights together the one-device weights and what more than one stage holds (the
    /// shared embedding on the first stage and on the one with decoder block 0; each stack's
    /// position-bias table on every stage with blocks of that stack); the prompt and the optimizer
    /// on the first stage alone; every stage computing every example, in --micro-batches.</summary>
    [Fact]
    public void T5XxlInFourStagesSplitsItsWeights()
    {
        var devices = Path.Combine(TestPaths.RepoRoot, "docs", "results", "h100-2026-11-26c", "devices.json");
        string[] args = ["plan", "--shape", "t5-xxl", "--precision", "bf16", "--batch-size", "32", "--input-length", "512", "--recompute",
                         "--attention", "fused", "--pipeline", "0,0,0,0", "--capabilities", devices];
        var whole = Json([.. args[..^4], "--capabilities", devices, "--device", "0"]).GetProperty("devices")[0];
        var plan = Json(args);
        Assert.Equal("pipeline", plan.GetProperty("placement").GetString());
        Assert.Equal(4, plan.GetProperty("microBatches").GetInt32());
        var stages = plan.GetProperty("devices").EnumerateArray().ToList();
        Assert.Equal(4, stages.Count);
        int encoder = 24, layers = 48;
        for (int s = 0; s < 4; s++)
        {
            int first = stages[s].GetProperty("firstLayer").GetInt32(), end = stages[s].GetProperty("endLayer").GetInt32();
            Assert.Equal(s == 0 ? 0 : stages[s - 1].GetProperty("endLayer").GetInt32(), first);
            Assert.True(end > first);
            Assert.Equal($"layers {first}..{end - 1}", stages[s].GetProperty("layers").GetString());
            Assert.Equal(32, stages[s].GetProperty("rows").GetInt32());
            Assert.Equal("bf16", stages[s].GetProperty("precision").GetString());
            Assert.Equal(s == 0, Bytes(stages[s], "training", "promptAndOptimizerBytes") > 0);
            foreach (var work in new[] { "training", "trainingWithValidation", "scoring" })
                Assert.Equal(Bytes(stages[s], work, "peakBytes"),
                             Bytes(stages[s], work, "weightsBytes") + Bytes(stages[s], work, "promptAndOptimizerBytes") + Bytes(stages[s], work, "workBytes"));
        }
        Assert.Equal(layers, stages[^1].GetProperty("endLayer").GetInt32());
        int Holding(Func<int, int, bool> holds) => stages.Count(st => holds(st.GetProperty("firstLayer").GetInt32(), st.GetProperty("endLayer").GetInt32()));
        long shared = 32128L * 4096 * 2, bias = 32L * 64 * 4;
        long again = (Holding((f, e) => f == 0 || (f <= encoder && e > encoder)) - 1) * shared
                     + (Holding((f, _) => f < encoder) - 1 + Holding((_, e) => e > encoder) - 1) * bias;
        Assert.True(again >= shared + 2 * bias);
        Assert.Equal(Bytes(whole, "training", "weightsBytes") + again, stages.Sum(st => Bytes(st, "training", "weightsBytes")));
        // Each stage holds about a quarter of the model.
        Assert.All(stages, st => Assert.InRange(Bytes(st, "training", "weightsBytes"), Bytes(whole, "training", "weightsBytes") / 5, Bytes(whole, "training", "weightsBytes") / 3));

        var text = CliRun.Of(args).Succeeded().Out;
        for (int s = 0; s < 4; s++)
            Assert.Contains($"stage {s} on device 0 (NVIDIA H100 80GB HBM3): {stages[s].GetProperty("layers").GetString()}, every example of each batch in 4 micro-batch(es) of up to 8",
                            text, StringComparison.Ordinal);
        Assert.Equal(8, Json([.. args, "--micro-batches", "8"]).GetProperty("microBatches").GetInt32());
    }

    /// <summary>The micro-batch passes of a stage share one set of scratch and keep apart only
    /// what each backward needs from its forward: more, smaller micro-batches need less work on
    /// every stage, training and scoring (with a scratch per pass, a stage's work was a whole
    /// batch's scratch whatever their number, and grew with it).</summary>
    [Fact]
    public void MoreMicroBatchesNeedLessWorkOnEveryStage()
    {
        var devices = Path.Combine(TestPaths.RepoRoot, "docs", "results", "h100-2026-11-26c", "devices.json");
        string[] args = ["plan", "--shape", "t5-xxl", "--precision", "bf16", "--batch-size", "32", "--input-length", "512", "--recompute",
                         "--attention", "fused", "--pipeline", "0,0,0,0", "--capabilities", devices];
        List<JsonElement> Stages(int microBatches) => Json([.. args, "--micro-batches", microBatches.ToString(CultureInfo.InvariantCulture)]).GetProperty("devices").EnumerateArray().ToList();
        var four = Stages(4);
        var eight = Stages(8);
        for (int s = 0; s < 4; s++)
            foreach (var work in new[] { "training", "trainingWithValidation", "scoring" })
                Assert.True(Bytes(eight[s], work, "workBytes") < Bytes(four[s], work, "workBytes"),
                            $"stage {s}, {work}: {Bytes(eight[s], work, "workBytes")} bytes in 8 micro-batches, {Bytes(four[s], work, "workBytes")} in 4");
    }

    /// <summary>A device without 16-bit storage is planned for, with a note that a run would refuse bf16 there.</summary>
    [Fact]
    public void SixteenBitWeightsOnADeviceWithoutThemAreNoted()
    {
        using var dir = new TempDir();
        var recorded = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "results", "h100-2026-11-26c", "devices.json"));
        File.WriteAllText(dir.File("devices.json"), recorded.Replace("\"storageBuffer16Bit\": true", "\"storageBuffer16Bit\": false", StringComparison.Ordinal));
        string[] args = ["plan", "--shape", "t5-base", "--capabilities", dir.File("devices.json"), "--device", "0"];
        var note = Assert.Single(Json([.. args, "--precision", "bf16"]).GetProperty("notes").EnumerateArray()).GetString();
        Assert.Equal("device 0: bf16 weights need 16-bit storage buffers, which NVIDIA H100 80GB HBM3 does not support: a run would refuse them", note);
        Assert.Empty(Json([.. args, "--precision", "int8"]).GetProperty("notes").EnumerateArray());
        // auto takes fp32 there.
        Assert.Equal("fp32", Json([.. args, "--precision", "auto"]).GetProperty("devices")[0].GetProperty("precision").GetString());
    }

    [Theory]
    [InlineData("error: give the model as exactly one of --model DIR and --shape NAME", "plan", "--shape", "t5-base", "--model", "x")]
    [InlineData("error: give the model as exactly one of --model DIR and --shape NAME", "plan")]
    [InlineData("error: --shape 't5-huge' is not one of t5-small, t5-base, t5-large, t5-xl, t5-xxl, ul2, umt5-base, byt5-small", "plan", "--shape", "t5-huge")]
    [InlineData("error: --batch-size must be positive, got 0", "plan", "--shape", "t5-base", "--batch-size", "0")]
    [InlineData("error: --input-length must be positive, got -1", "plan", "--shape", "t5-base", "--input-length", "-1")]
    [InlineData("error: --dropout must be in [0, 1), got 1", "plan", "--shape", "t5-base", "--dropout", "1")]
    [InlineData("error: --batch-size 1 cannot give each of 2 devices an example", "plan", "--shape", "t5-base", "--batch-size", "1", "--devices", "0,0")]
    [InlineData("error: give --device or --devices, not both", "plan", "--shape", "t5-base", "--device", "0", "--devices", "0,0")]
    [InlineData("error: --devices 0,cpu: cpu computes alone, not among Vulkan devices", "plan", "--shape", "t5-base", "--devices", "0,cpu")]
    [InlineData("error: --devices 0,: an empty device in the list", "plan", "--shape", "t5-base", "--devices", "0,")]
    [InlineData("error: --pipeline and --devices do not combine yet: data parallel over pipelines is not built; give one of them", "plan", "--shape", "t5-base", "--pipeline", "0,0", "--devices", "0,0")]
    [InlineData("error: --micro-batches cuts the batches of a pipeline: it needs --pipeline", "plan", "--shape", "t5-base", "--micro-batches", "2")]
    [InlineData("error: --pipeline 0: a pipeline needs at least two devices (one model on one device is --device)", "plan", "--shape", "t5-base", "--pipeline", "0")]
    [InlineData("error: a pipeline of 13 stages: it needs 2 to 12, one stage per device and at least one of the model's 12 layers (6 encoder, 6 decoder) per stage", "plan", "--shape", "t5-small", "--pipeline", "cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu,cpu")]
    public void BadValuesAreOneLineErrors(string message, params string[] args)
    {
        var r = CliRun.Of(args);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal(message, Assert.Single(CliRun.Lines(r.Err)));
    }

    [Fact]
    public void HelpExplainsThePlan()
    {
        var help = CliRun.Of("plan", "--help").Succeeded().Out;
        foreach (var word in new[] { "t5-xxl", "--recompute", "--devices", "--pipeline", "--micro-batches", "--memory-cap", "--capabilities", "--json", "scoring" })
            Assert.Contains(word, help, StringComparison.Ordinal);
    }
}
