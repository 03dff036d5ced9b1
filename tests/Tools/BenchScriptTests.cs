using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Cli.Commands;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Tools;

/// <summary>The Python side of the benchmarks with the standard library alone: bench-table.py on
/// a report as vkprompt writes it beside a peer's, and peer_bench.py's FLOP formula and its exit
/// without torch; and device-bench.sh's refusal of a plan or switch it does not know.</summary>
public sealed class BenchScriptTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    static (int Code, string Out, string Err) Python(params string[] args) => Run("python3", new Dictionary<string, string>(), args);

    /// <summary><paramref name="program"/> in the repository root, with <paramref name="environment"/>
    /// added to this process's.</summary>
    static (int Code, string Out, string Err) Run(string program, Dictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(); throw new TimeoutException($"{program} did not finish in a minute"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    static BenchReport VkPromptReport(string device, double medianMs, string precision, bool tuned = false) => new(
        BenchCommand.Schema, "vkprompt 0.1.0", "vkprompt bench --shape t5-base", "2026-01-01T00:00:00Z",
        new BenchDevice(device, "driver 1", "vulkan"), null, null,
        new BenchModel("t5-base", 247_577_856, 768, 2048, 12, 64, 12, 12, 32128, "gated-gelu", false),
        new BenchBatch(32, 512, 8, 100), precision, "fp32", new BenchAttention("auto", "fused", "unfused", "fused"), false, 0.1, 2, 3, true,
        tuned, new StepStats(medianMs, medianMs - 1, medianMs + 2), [medianMs - 1, medianMs, medianMs + 2],
        32 / (medianMs / 1e3), 16640 / (medianMs / 1e3), 16640, 4_392_222_720_000, 4_838_140_674_048, 9_230_363_394_048, 9.23 / (medianMs / 1e3),
        3L << 30, 4L << 30, 1L << 30, [new("fp32", 3L << 30)], new LossStats(10.4, 10.3), null, []);

    /// <summary>The fields of a peer_bench.py report that bench-table.py reads; without
    /// <paramref name="submodules"/>, a report from before peer_bench.py recorded its settings.</summary>
    static Dictionary<string, object?> PeerReport(string device, double? medianMs, string precision, string? error = null,
        int? submodules = null, double? compileSeconds = null, bool tf32 = false)
    {
        var report = new Dictionary<string, object?>
        {
            ["schema"] = "vkprompt-bench/1",
            ["implementation"] = "pytorch 2.11.0 + transformers 5.17.0 + peft 0.18.0",
            ["device"] = new Dictionary<string, object> { ["name"] = device, ["driver"] = "CUDA 13.0", ["api"] = "cuda" },
            ["model"] = new Dictionary<string, object> { ["shape"] = "t5-base" },
            ["batch"] = new Dictionary<string, object> { ["batchSize"] = 32, ["inputLength"] = 512, ["targetLength"] = 8, ["promptLength"] = 100 },
            ["precision"] = precision,
            ["activationPrecision"] = precision,
            ["recompute"] = false,
            ["stepMs"] = medianMs is double m ? new Dictionary<string, double> { ["median"] = m, ["min"] = m, ["max"] = m } : null,
            ["examplesPerSecond"] = medianMs is double e ? 32 / (e / 1e3) : null,
            ["tokensPerSecond"] = null,
            ["tflops"] = null,
            ["peakMemoryBytes"] = 5L << 30,
            ["error"] = error,
        };
        if (submodules is int n)
        {
            report["numTransformerSubmodules"] = n;
            report["promptRows"] = 100;
            report["compile"] = compileSeconds is not null;
            report["compileSeconds"] = compileSeconds;
            report["tf32"] = tf32;
        }
        return report;
    }

    string Write(string name, string json)
    {
        File.WriteAllText(dir.File(name), json);
        return dir.File(name);
    }

    [Fact]
    public void BenchTablePutsEachRunOnARowAndComparesVkPromptWithItsPeer()
    {
        string vk = Write("vk.json", JsonSerializer.Serialize(VkPromptReport("NVIDIA H100", 500, "fp32"), CliJson.Default.BenchReport));
        string peer = Write("peer.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", 1000, "fp32")));
        string peerBf16 = Write("peer-bf16.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", 250, "bf16")));
        string oom = Write("oom.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", null, "fp32", "out of memory: CUDA out of memory")));
        string tuned = Write("vk-tuned.json", JsonSerializer.Serialize(VkPromptReport("NVIDIA H100", 400, "fp32", tuned: true), CliJson.Default.BenchReport));

        var (code, stdout, stderr) = Python("tools/bench-table.py", vk, peer, peerBf16, oom, tuned);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2 + 5, lines.Length);
        var header = Cells(lines[0]);
        var rows = lines.Skip(2).Select(Cells).ToList();
        Assert.All(rows, r => Assert.Equal(header.Count, r.Count));
        string Cell(int row, string column) => rows[row][header.IndexOf(column)];

        Assert.Equal("vkprompt 0.1.0", Cell(0, "implementation"));
        Assert.Equal("fp32 / fp32", Cell(0, "weights / activations"));
        Assert.Equal("bf16 / bf16", Cell(2, "weights / activations"));
        Assert.Equal("auto: encoder self fused, decoder self unfused, cross fused", Cell(0, "attention"));
        Assert.Equal("-", Cell(1, "attention"));
        Assert.Equal("500.0 (499.0-502.0)", Cell(0, "step ms: median (min-max)"));
        Assert.Equal("3.00", Cell(0, "peak memory GiB"));
        // The fp32 peer took twice as long; the bf16 one is another precision and is not compared.
        Assert.Equal("2.00x", Cell(0, "vs peer"));
        Assert.Equal("-", Cell(1, "vs peer"));
        Assert.StartsWith("failed: out of memory", Cell(3, "step ms: median (min-max)"), StringComparison.Ordinal);
        // A tuned run says so, and is compared with the same peer.
        Assert.Equal("vkprompt 0.1.0, VKPROMPT_MATMUL_TUNE=1", Cell(4, "implementation"));
        Assert.Equal("2.50x", Cell(4, "vs peer"));
    }

    /// <summary>The peer at its best: of an eager and a compiled peer the faster is compared, a TF32
    /// peer (faster still) is not, as VkPrompt's fp32 is strict; each peer row says what it did.</summary>
    [Fact]
    public void BenchTableComparesWithTheFastestPeerOfTheSameStepAndSaysWhatThePeerDid()
    {
        string vk = Write("vk.json", JsonSerializer.Serialize(VkPromptReport("NVIDIA H100", 500, "fp32"), CliJson.Default.BenchReport));
        string eager = Write("eager.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", 1000, "fp32", submodules: 1)));
        string compiled = Write("compiled.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", 750, "fp32", submodules: 1, compileSeconds: 61.6)));
        string tf32 = Write("tf32.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", 300, "fp32", submodules: 1, tf32: true)));
        string old = Write("old.json", JsonSerializer.Serialize(PeerReport("NVIDIA H100", 900, "fp32")));

        var (code, stdout, stderr) = Python("tools/bench-table.py", vk, eager, compiled, tf32, old);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var header = Cells(lines[0]);
        var rows = lines.Skip(2).Select(Cells).ToList();
        string Cell(int row, string column) => rows[row][header.IndexOf(column)];

        Assert.Equal("1.50x", Cell(0, "vs peer"));
        const string Versions = "pytorch 2.11.0 + transformers 5.17.0 + peft 0.18.0, ";
        Assert.Equal(Versions + "num_transformer_submodules=1", Cell(1, "implementation"));
        Assert.Equal(Versions + "num_transformer_submodules=1, torch.compile (62 s to compile)", Cell(2, "implementation"));
        Assert.Equal(Versions + "num_transformer_submodules=1, TF32", Cell(3, "implementation"));
        Assert.Equal(Versions + "num_transformer_submodules unset (PEFT's default, 2)", Cell(4, "implementation"));
    }

    static List<string> Cells(string line) => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToList();

    [Fact]
    public void BenchTableRefusesAFileThatIsNoReport()
    {
        var (code, _, stderr) = Python("tools/bench-table.py", Write("other.json", "{\"schema\": \"other\"}"));
        Assert.Equal(2, code);
        Assert.Contains("not a vkprompt-bench/1 report", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void PeerCountsTheSameFlopsAsVkPrompt()
    {
        var cases = new (string Model, BatchShape Shape)[]
        {
            ("t5-small", new BatchShape(8, 128, 8, 100)), ("t5-base", new BatchShape(32, 512, 8, 100)),
            ("t5-large", new BatchShape(32, 512, 8, 100)), ("t5-xl", new BatchShape(3, 40, 16, 5)),
        };
        string calls = string.Join(", ", cases.Select(c =>
        {
            var m = T5Config.Named(c.Model);
            var s = c.Shape;
            return string.Create(CultureInfo.InvariantCulture,
                $"p.step_flops({m.DModel}, {m.DKv}, {m.NumHeads}, {m.DFf}, {m.NumLayers}, {m.NumDecoderLayers}, {m.VocabSize}, {(m.IsGatedAct ? "True" : "False")}, {s.Batch}, {s.InputLength}, {s.TargetLength}, {s.PromptLength})");
        }));
        var (code, stdout, stderr) = Python("-c", $"import sys; sys.path.insert(0, 'tools/peer'); import peer_bench as p; print([list(f) for f in [{calls}]])");
        Assert.True(code == 0, stderr);
        var expected = cases.Select(c => new[] { StepFlops.Forward(T5Config.Named(c.Model), c.Shape), StepFlops.Backward(T5Config.Named(c.Model), c.Shape) });
        Assert.Equal(JsonSerializer.Serialize(expected), stdout.Trim().Replace(" ", ""));
    }

    [Fact]
    public void PeerSaysWhatIsMissingAndExitsThree()
    {
        // torch is made unimportable, whether or not this machine has it.
        var (code, stdout, stderr) = Python("-c",
            "import runpy, sys; sys.modules['torch'] = None; sys.argv = ['peer_bench.py', '--shape', 't5-small']; " +
            "runpy.run_path('tools/peer/peer_bench.py', run_name='__main__')");
        Assert.Equal(3, code);
        Assert.Equal("", stdout);
        Assert.Contains("'torch' is missing", stderr, StringComparison.Ordinal);
    }

    /// <summary>A stale plan name or sweep variable stops device-bench.sh before it runs anything
    /// (it would otherwise run the full plan), naming the new spelling; the budget of 0 keeps a
    /// broken check from starting a run.</summary>
    [Theory]
    [InlineData("BENCH_PLAN", "coopmat", "error: BENCH_PLAN=coopmat was renamed BENCH_PLAN=matrix-units")]
    [InlineData("BENCH_PLAN", "everything", "error: BENCH_PLAN=everything: expected full, attention, nv2, matrix-units or peer")]
    [InlineData("COOPMAT_SWEEP", "4x2x2x4x32", "error: COOPMAT_SWEEP was renamed MATRIX_UNITS_SWEEP")]
    public void DeviceBenchRefusesRenamedSwitches(string variable, string value, string message)
    {
        var (code, stdout, stderr) = Run("bash", new() { ["OUT"] = dir.Path, ["BENCH_BUDGET_S"] = "0", [variable] = value }, "tools/device-bench.sh", "device");
        Assert.True(code == 2, stderr);
        Assert.Equal(message, stdout.Trim());
        Assert.Equal(message, File.ReadAllText(dir.File("log.txt")).Trim());
    }
}
