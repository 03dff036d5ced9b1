using System.Text.RegularExpressions;
using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>`vkprompt bench` run in-process on a tiny random model for one step: the JSON it
/// writes has every field tools/bench-table.py and the docs rely on, with consistent values.
/// No assertion is on how fast anything ran. In a GPU collection (<see cref="GpuCollections"/>) so
/// that it runs alone among that collection's tests.</summary>
[Collection(GpuCollections.Rest)]
public sealed class BenchCommandTests : IDisposable
{
    readonly TempDir dir = new();
    static readonly T5Config Config = ModelTestFiles.Tiny(gated: true) with { VocabSize = 64 };

    public BenchCommandTests() => RandomT5.Write(dir.File("model"), Config, seed: 2);

    public void Dispose() => dir.Dispose();

    /// <summary>Runs bench on the tiny model for one step; <paramref name="extra"/> adds options
    /// or replaces the value of one given here.</summary>
    (int Code, string Out, string Err) Bench(params string[] extra)
    {
        var options = new Dictionary<string, string?>
        {
            ["--shape"] = dir.File("model"), ["--batch-size"] = "2", ["--input-length"] = "8", ["--target-length"] = "8", ["--prompt-length"] = "3",
            ["--steps"] = "1", ["--warmup"] = "1", ["--json"] = dir.File("bench.json"),
        };
        for (int i = 0; i < extra.Length; i++)
            options[extra[i]] = i + 1 < extra.Length && !extra[i + 1].StartsWith("--", StringComparison.Ordinal) ? extra[++i] : null;
        var args = options.SelectMany(o => o.Value is null ? [o.Key] : new[] { o.Key, o.Value }).Prepend("bench").ToList();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void WritesAReportWithEveryField()
    {
        var (code, stdout, stderr) = Bench();
        Assert.True(code == 0, stderr);
        Assert.Contains("TFLOP/s", stdout, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
        var r = json.RootElement;

        Assert.Equal("vkprompt-bench/1", r.GetProperty("schema").GetString());
        Assert.StartsWith("vkprompt ", r.GetProperty("implementation").GetString(), StringComparison.Ordinal);
        Assert.Contains("bench --shape", r.GetProperty("command").GetString(), StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(r.GetProperty("device").GetProperty("name").GetString()));
        Assert.Equal("vulkan", r.GetProperty("device").GetProperty("api").GetString());
        Assert.True(r.GetProperty("capabilities").GetProperty("subgroupSize").GetInt32() > 0);
        // Tuned only where VKPROMPT_MATMUL_TUNE=1 asks for it, and never on a CPU device.
        bool tune = EnvironmentSettings.GpuOptions().TuneMatMul && r.GetProperty("capabilities").GetProperty("deviceType").GetString() != "cpu";
        Assert.Equal(tune, r.GetProperty("tuneMatMul").GetBoolean());
        // The device plan the step ran with, beside the capabilities.
        var plan = r.GetProperty("plan");
        Assert.Equal(r.GetProperty("capabilities").GetProperty("name").GetString(), plan.GetProperty("device").GetString());
        Assert.Equal(tune, plan.GetProperty("tunesProducts").GetBoolean());

        var model = r.GetProperty("model");
        Assert.Equal("model", model.GetProperty("shape").GetString());
        Assert.Equal(Config.DModel, model.GetProperty("dModel").GetInt32());
        Assert.Equal(T5Names.All(Config).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)), model.GetProperty("parameters").GetInt64());
        var batch = r.GetProperty("batch");
        Assert.Equal([2, 8, 8, 3], new[] { "batchSize", "inputLength", "targetLength", "promptLength" }.Select(k => batch.GetProperty(k).GetInt32()));
        Assert.Equal("fp32", r.GetProperty("precision").GetString());
        Assert.Equal("fp32", r.GetProperty("activationPrecision").GetString());
        Assert.False(r.GetProperty("recompute").GetBoolean());
        Assert.Equal(1, r.GetProperty("steps").GetInt32());
        // The default follows VKPROMPT_ATTENTION; under auto every attention here (11 x 11
        // scores at most) is too small to fuse, on any device.
        string setting = EnvironmentSettings.Attention().Name();
        string ran = setting == "fused" ? "fused" : "unfused";
        Assert.Equal([setting, ran, ran, ran], Attention(r));

        var step = r.GetProperty("stepMs");
        double median = step.GetProperty("median").GetDouble();
        Assert.True(median > 0);
        Assert.True(step.GetProperty("min").GetDouble() <= median && median <= step.GetProperty("max").GetDouble());
        Assert.Equal(1, r.GetProperty("stepTimesMs").GetArrayLength());
        Assert.Equal(2 / (median / 1e3), r.GetProperty("examplesPerSecond").GetDouble(), 1e-9);
        Assert.Equal(2 * (8 + 8), r.GetProperty("tokensPerStep").GetInt64());
        Assert.Equal(32 / (median / 1e3), r.GetProperty("tokensPerSecond").GetDouble(), 1e-9);

        var shape = new BatchShape(2, 8, 8, 3);
        long flops = StepFlops.Total(Config, shape);
        Assert.Equal(flops, r.GetProperty("flopsPerStep").GetInt64());
        Assert.Equal(flops, r.GetProperty("forwardFlops").GetInt64() + r.GetProperty("backwardFlops").GetInt64());
        Assert.Equal(flops / (median / 1e3) / 1e12, r.GetProperty("tflops").GetDouble(), 1e-12);

        long weights = r.GetProperty("weightMemoryBytes").GetInt64();
        Assert.True(weights >= 4 * T5Names.All(Config).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)));
        Assert.True(r.GetProperty("peakMemoryBytes").GetInt64() > weights);
        Assert.True(r.GetProperty("reservedMemoryBytes").GetInt64() >= r.GetProperty("peakMemoryBytes").GetInt64());
        Assert.True(double.IsFinite(r.GetProperty("loss").GetProperty("first").GetDouble()));

        // lavapipe and GPUs time dispatches; the step's phases come in the order it runs them.
        Assert.True(r.GetProperty("profiled").GetBoolean());
        var breakdown = r.GetProperty("breakdown");
        var phases = breakdown.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(["encoder_forward", "decoder_forward", "lm_head_loss", "backward", "optimizer"], phases.Select(p => p.GetProperty("name").GetString()));
        Assert.Equal(1.0, phases.Sum(p => p.GetProperty("share").GetDouble()), 1e-9);
        foreach (var p in phases)
            Assert.Equal(p.GetProperty("ms").GetDouble(), p.GetProperty("ops").EnumerateArray().Sum(o => o.GetProperty("ms").GetDouble()), 1e-9);
        var ops = breakdown.GetProperty("ops").EnumerateArray().Select(o => o.GetProperty("name").GetString()).ToList();
        Assert.Contains("matmul", ops);
        Assert.Contains("adafactor", ops);
        Assert.Equal(breakdown.GetProperty("gpuMs").GetDouble(), phases.Sum(p => p.GetProperty("ms").GetDouble()), 1e-9);
    }

    static string[] Attention(JsonElement report)
    {
        var a = report.GetProperty("attention");
        return new[] { "setting", "encoderSelf", "decoderSelf", "cross" }.Select(k => a.GetProperty(k).GetString()!).ToArray();
    }

    /// <summary>Each setting is recorded with what it ran; the same step fused and unfused sees
    /// the same dropout masks (FusedAttention draws those Dropout would), so its loss agrees.</summary>
    [Fact]
    public void RecordsTheAttentionItRan()
    {
        double Loss(string attention)
        {
            var (code, stdout, stderr) = Bench("--attention", attention, "--no-profile");
            Assert.True(code == 0, stderr);
            Assert.Contains($"attention: {attention}", stdout, StringComparison.Ordinal);
            using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
            Assert.Equal([attention, attention, attention, attention], Attention(json.RootElement));
            return json.RootElement.GetProperty("loss").GetProperty("first").GetDouble();
        }
        double fused = Loss("fused"), unfused = Loss("unfused");
        Assert.Equal(unfused, fused, 1e-4 * Math.Abs(unfused));
    }

    /// <summary>--devices with two logical devices on the test device reports how a data-parallel
    /// step scales: one worker alone on its share, then both on the whole batch, and the ratio of
    /// the medians; the CPU backend is refused.</summary>
    [Fact]
    public void SeveralDevicesReportTheScalingEfficiency()
    {
        string device = EnvironmentSettings.GpuOptions().Device;
        var (code, stdout, stderr) = Bench("--devices", $"{device},{device}", "--steps", "3");
        Assert.True(code == 0, stderr);
        Assert.Single(Regex.Matches(stdout, "^scaling efficiency: ", RegexOptions.Multiline));
        AssertScalingReport(dir.File("bench.json"), distributed: "none", workers: 2, batch: 2, steps: 3);
        var (cpuCode, _, cpuErr) = Bench("--devices", $"{device},cpu");
        Assert.Equal(CliConventions.UserError, cpuCode);
        Assert.Contains("--device cpu (the C# reference backend) is not benchmarked", cpuErr, StringComparison.Ordinal);
    }

    /// <summary>The scaling report of bench --devices or --distributed mpi (BenchScaling): its
    /// workers and batches, every step timed, the medians of the listed times and their ratio.</summary>
    internal static void AssertScalingReport(string path, string distributed, int workers, int batch, int steps)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        var r = json.RootElement;
        Assert.Equal("vkprompt-bench-scaling/1", r.GetProperty("schema").GetString());
        Assert.Equal(distributed, r.GetProperty("distributed").GetString());
        Assert.Equal(workers, r.GetProperty("workers").GetInt32());
        Assert.Equal(batch, r.GetProperty("batch").GetProperty("batchSize").GetInt32());
        Assert.Equal((batch + workers - 1) / workers, r.GetProperty("perWorkerBatch").GetInt32());
        double[] Times(string name) => r.GetProperty(name).EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var single = Times("singleWorkerStepTimesMs");
        var timed = Times("stepTimesMs");
        Assert.Equal(steps, single.Length);
        Assert.Equal(steps, timed.Length);
        Assert.All(single.Concat(timed), t => Assert.True(t > 0, $"step time {t} ms"));
        double Median(double[] t) => t.Order().ElementAt(t.Length / 2);
        Assert.Equal(Median(single), r.GetProperty("singleWorkerStepMs").GetProperty("median").GetDouble(), 9);
        Assert.Equal(Median(timed), r.GetProperty("stepMs").GetProperty("median").GetDouble(), 9);
        Assert.Equal(Median(single) / Median(timed), r.GetProperty("efficiency").GetDouble(), 9);
    }

    [Fact]
    public void WithoutTimestampsThereIsNoBreakdown()
    {
        var (code, _, stderr) = Bench("--no-profile", "--recompute");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
        Assert.False(json.RootElement.GetProperty("profiled").GetBoolean());
        Assert.True(json.RootElement.GetProperty("recompute").GetBoolean());
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("breakdown").ValueKind);
    }

    [Fact]
    public void Bf16WeightsTakeAboutHalfTheMemory()
    {
        long WeightBytes(string precision)
        {
            var (code, _, stderr) = Bench("--precision", precision, "--no-profile");
            Assert.True(code == 0, stderr);
            using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
            Assert.Equal(precision, json.RootElement.GetProperty("precision").GetString());
            Assert.Equal("fp32", json.RootElement.GetProperty("activationPrecision").GetString());
            return json.RootElement.GetProperty("weightMemoryBytes").GetInt64();
        }
        long fp32 = WeightBytes("fp32"), bf16 = WeightBytes("bf16");
        // Layer norms and position biases stay fp32, and small buffers round up to the driver's alignment.
        Assert.InRange(bf16, fp32 / 3, fp32 * 3 / 4);
    }

    /// <summary>
    /// 16-bit activations show their saving in the report (the acceptance: the peak memory
    /// of a t5-small step, with and without them, in one run): bench runs its timed step with bf16
    /// activations, then one with fp32 on the same weights, and reports both peaks. The saving
    /// measured is the one the memory plan predicts, to the byte (lavapipe's buffers are the
    /// sizes asked: MemoryPlanTests), so the numbers are the step's own and not the noise of a pool.
    /// </summary>
    [Fact]
    public void SixteenBitActivationsReportTheirSaving()
    {
        var (code, stdout, stderr) = Bench("--shape", "t5-small", "--input-length", "16", "--prompt-length", "8", "--warmup", "0", "--no-profile", "--activations", "bf16");
        Assert.True(code == 0, stderr);
        Assert.Contains("activation memory:", stdout, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
        var r = json.RootElement;
        Assert.StartsWith("bf16", r.GetProperty("activationPrecision").GetString(), StringComparison.Ordinal);
        var memory = r.GetProperty("memoryByActivations").EnumerateArray().ToList();
        Assert.Equal(["bf16", "fp32"], memory.Select(m => m.GetProperty("activations").GetString()));
        long bf16 = memory[0].GetProperty("peakMemoryBytes").GetInt64(), fp32 = memory[1].GetProperty("peakMemoryBytes").GetInt64();
        Assert.Equal(r.GetProperty("peakMemoryBytes").GetInt64(), bf16);

        var config = T5Config.Named("t5-small");
        MemoryPlanSettings Settings(ActivationPrecision a) =>
            new(config, WeightPrecision.Fp32, 2, 16, 8, 8, AttentionFusion.Auto, ActivationMode.Store, Activations: a);
        var lavapipe = GpuContext.ListDevices().First(d => d.DriverName == "llvmpipe");
        var device = new PlanDevice("0", lavapipe, DevicePlan.For(lavapipe, EnvironmentSettings.GpuOptions()));
        long Planned(ActivationPrecision a) => MemoryPlan.ForDevice(Settings(a), device, 2).Training.RequestedPeak;
        Assert.Equal(Planned(ActivationPrecision.Fp32) - Planned(ActivationPrecision.Bf16), fp32 - bf16);
        // The weights (fp32, most of the peak at this size) are the same in both; of the step's work beyond them,
        // bf16 saved 27 % here (3.7 of 13.4 MiB): half the block activations, beside the fp32 logits, streams and gradients.
        long work = fp32 - r.GetProperty("weightMemoryBytes").GetInt64();
        Assert.True(fp32 - bf16 > work / 5, $"bf16 activations saved {fp32 - bf16} of the fp32 step's {work} bytes of work");

        // fp32 activations report one peak, and no comparison.
        (code, stdout, stderr) = Bench("--no-profile", "--activations", "fp32");
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain("activation memory:", stdout, StringComparison.Ordinal);
        using var fp32Json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
        Assert.Single(fp32Json.RootElement.GetProperty("memoryByActivations").EnumerateArray());
    }

    /// <summary>int8 weights, the bench's report of them: a byte a weight and a scale a row
    /// against fp32's four bytes; the tiny model's fp32 norms, 64-wide rows (a scale is a
    /// sixteenth more) and the alignment of small buffers keep it above a quarter.</summary>
    [Fact]
    public void Int8WeightsTakeAboutAQuarterOfTheMemory()
    {
        long WeightBytes(string precision)
        {
            var (code, _, stderr) = Bench("--precision", precision, "--no-profile");
            Assert.True(code == 0, stderr);
            using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
            Assert.Equal(precision, json.RootElement.GetProperty("precision").GetString());
            return json.RootElement.GetProperty("weightMemoryBytes").GetInt64();
        }
        long fp32 = WeightBytes("fp32"), int8 = WeightBytes("int8");
        Assert.InRange(int8, fp32 / 5, fp32 * 2 / 5);
    }

    [Theory]
    [InlineData("cpu", "not benchmarked", "--device", "cpu")]
    [InlineData("length", "must be a multiple of 8", "--input-length", "12")]
    [InlineData("json", "its directory does not exist", "--json", "/no/such/dir/bench.json")]
    public void RefusesWhatItCannotMeasureWithExitTwo(string what, string says, params string[] extra)
    {
        var (code, stdout, stderr) = Bench(extra);
        Assert.True(code == CliConventions.UserError, what);
        Assert.Contains(says, Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)), StringComparison.Ordinal);
        Assert.Equal("", stdout);
        Assert.False(File.Exists(dir.File("bench.json")));
    }

    /// <summary>A UL2-style (gated-silu) model with umT5's per-layer position bias runs, its report
    /// names its feed-forward, and its parameters count every layer's bias table.</summary>
    [Fact]
    public void RunsTheVariants()
    {
        var variant = Config with { FeedForwardProj = T5FeedForward.GatedSilu, PerLayerPositionBias = true };
        RandomT5.Write(dir.File("variant"), variant, seed: 3);
        var (code, _, err) = Bench("--shape", dir.File("variant"));
        Assert.True(code == 0, err);
        var model = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json"))).RootElement.GetProperty("model");
        Assert.Equal("gated-silu", model.GetProperty("feedForward").GetString());
        long buckets = (long)variant.RelativeAttentionNumBuckets * variant.NumHeads;
        Assert.Equal(T5Names.All(Config).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)) + (variant.NumLayers + variant.NumDecoderLayers - 2) * buckets,
                     model.GetProperty("parameters").GetInt64());
    }

    /// <summary>The named shapes --help lists are those T5Config.Named makes, ul2 and umt5-base included.</summary>
    [Fact]
    public void HelpNamesEveryShape()
    {
        foreach (var command in new[] { "bench", "make-model" })
        {
            var stdout = new StringWriter();
            Assert.Equal(0, Program.Run([command, "--help"], stdout, new StringWriter()));
            string help = string.Join(" ", stdout.ToString().Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries));
            foreach (var name in T5Config.ShapeNames) Assert.Contains(name, help, StringComparison.Ordinal);
            Assert.Contains("ul2 (google/ul2's: gated-silu, d_kv 256", help, StringComparison.Ordinal);
            Assert.Contains("umt5-base (google/umt5-base's: a position bias per layer", help, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void AnUnknownShapeIsAUsageError()
    {
        var stderr = new StringWriter();
        int code = Program.Run(["bench", "--shape", dir.File("no-such-model")], new StringWriter(), stderr);
        Assert.Equal(CliConventions.UserError, code);
        Assert.Contains("neither t5-small", stderr.ToString(), StringComparison.Ordinal);
    }
}
