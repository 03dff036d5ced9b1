using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Cli.Commands;

/// <summary>
/// <c>vkprompt bench peak</c>: the rate the device's matrix units reach through this driver and
/// the cooperative-matrix extension the context uses (<see cref="MatrixPeakKernel"/>), with the
/// operands' fragments held in registers and reloaded from shared memory: the ceiling that
/// <c>bench matmul</c>'s matrix-unit products are read against, the same on every vendor.
/// </summary>
internal static class BenchPeakCommand
{
    public const string Schema = "vkprompt-bench-peak/1";

    public static Command Create()
    {
        var iterations = new Option<int>("--iterations") { Description = "Iterations of each subgroup's 8 products, at most 1048576 (the checked sums stay exact up to there). Default: 4096.", DefaultValueFactory = _ => 4096 };
        var workgroups = new Option<int>("--workgroups")
        {
            Description = $"Workgroups of {MatrixPeakKernel.Warps} subgroups per dispatch: enough to fill the largest GPUs several times over. Default: 2048.",
            DefaultValueFactory = _ => 2048,
        };
        var reps = new Option<int>("--reps") { Description = "Timed dispatches of each variant, back to back, each between GPU timestamps. Default: 5.", DefaultValueFactory = _ => 5 };
        var json = new Option<string?>("--json") { HelpName = "FILE", Description = "Where to write the JSON report. Default: vkprompt-bench-peak.json in the current directory." };
        var units = new Option<string>("--matrix-units")
        {
            HelpName = "auto|khr|nv|emulate",
            Description = "Which build of the kernel runs: auto (VK_KHR_cooperative_matrix where the device and this build have it, else VK_NV_cooperative_matrix), " +
                          "khr or nv (an error where missing), or emulate (ordinary arithmetic on any device with fp16 arithmetic: checks the kernel, its rate means nothing). " +
                          "Default: VKPROMPT_MATRIX_UNITS where it is khr, nv or emulate, else auto.",
            DefaultValueFactory = _ => EnvironmentSettings.GpuOptions().MatrixUnits is var v && v is MatrixUnitsRequest.Khr or MatrixUnitsRequest.Nv or MatrixUnitsRequest.Emulate
                ? v.ToString().ToLowerInvariant() : "auto",
        };
        units.AcceptOnlyFromAmong("auto", "khr", "nv", "emulate");
        var device = Cli.DeviceOption();
        var cmd = new Command("peak",
            "Measure the rate of the device's matrix units through Vulkan: 16x16x16 products of fp16 operands with fp32 sums, as the matrix-unit product makes them, " +
            $"{MatrixPeakKernel.Warps} subgroups a workgroup, {MatrixPeakKernel.TilesM} x {MatrixPeakKernel.TilesN} accumulators a subgroup, no global memory traffic but the results. " +
            "Two variants: the operands' fragments loaded once ('registers'), and reloaded from shared memory for every product step as the product does ('shared'). " +
            "Every result is checked; exit code 1 where one is wrong.")
        {
            iterations, workgroups, reps, units, json, device,
        };
        cmd.SetAction(parse =>
        {
            int it = ModelOptions.Positive(parse, iterations), wg = ModelOptions.Positive(parse, workgroups), n = ModelOptions.Positive(parse, reps);
            string dev = parse.GetValue(device)!;
            if (dev.Equals("cpu", StringComparison.OrdinalIgnoreCase))
                throw new UsageException("bench peak measures a Vulkan device; --device cpu (the C# reference backend) is not benchmarked");
            string path = ModelOptions.OutputFile(json.Name, parse.GetValue(json) ?? "vkprompt-bench-peak.json", OutputKind.Report);
            var console = Cli.Console(parse);
            var report = Measure(dev, parse.GetValue(units)!, it, wg, n, "vkprompt " + string.Join(' ', parse.Tokens.Select(token => token.Value)), ModelOptions.Log(parse));
            Print(console, report);
            AtomicFile.WriteAllText(path, JsonSerializer.Serialize(report, CliJson.Default.BenchPeakReport) + "\n");
            console.WriteLine($"wrote {path}");
            if (report.Runs.All(r => r.Ok)) return Cli.Ok;
            parse.InvocationConfiguration.Error.WriteLine("error: a variant's results are wrong (see 'ok' in the report): its rate counts products it did not make");
            return Cli.InternalError;
        });
        return cmd;
    }

    // Exact in fp16, and their sums exact in fp32 for any iteration count up to 2^20.
    const float A = 0.75f, B = -1.5f;

    static BenchPeakReport Measure(string device, string units, int iterations, int workgroups, int reps, string command, Action<string>? log)
    {
        if (iterations > 1 << 20) throw new UsageException($"--iterations must be at most {1 << 20} (the sums stay exact up to there), got {iterations}");
        var options = EnvironmentSettings.GpuOptions();
        var request = units switch { "khr" => MatrixUnitsRequest.Khr, "nv" => MatrixUnitsRequest.Nv, "emulate" => MatrixUnitsRequest.Emulate, _ => MatrixUnitsRequest.Auto };
        using var ctx = GpuContext.Create(options with
        {
            Device = device, Log = log, MatrixUnits = request,
            // So that a refusal names the option the user gave, not only the library's setting.
            Sources = new Dictionary<string, OptionSource>(options.Sources) { [nameof(GpuOptions.MatrixUnits)] = new("--matrix-units", units, request) },
        });
        var caps = ctx.Capabilities;
        if (!ctx.UsesMatrixUnits)
            throw new GpuException($"{caps.Name} has no matrix units this build can use (vkprompt devices says which it has); " +
                                   "--matrix-units emulate runs the kernel emulated, to check it");
        if (workgroups > caps.MaxWorkGroupCountX)
            throw new UsageException($"--workgroups must be at most {caps.MaxWorkGroupCountX} on {caps.Name}, got {workgroups}");
        using var c = new GpuBuffer(ctx, 4 * MatrixPeakKernel.Outputs(workgroups), "peak_c");
        float expected = iterations * 16 * A * B;
        var runs = new List<PeakRun>();
        foreach (bool reload in new[] { false, true })
        {
            var (ms, _) = DispatchTimer.Repeat(ctx, g => MatrixPeakKernel.Run(g, c, workgroups, iterations, reload, A, B), reps, warmupMs: 100);
            int wrong = c.Download<float>().Count(v => v != expected);
            double median = DispatchTimer.Median(ms);
            runs.Add(new PeakRun(reload ? "shared" : "registers", new TimeStats(median, ms.Min(), ms.Max()),
                                 MatrixPeakKernel.Flops(workgroups, iterations) / (median / 1e3) / 1e12, wrong == 0, wrong));
            log?.Invoke($"{runs[^1].Fragments}: median {median:F3} ms, {wrong} wrong outputs");
        }
        if (ctx.Validation.Errors.FirstOrDefault() is { } validationError)
            throw new InvalidOperationException($"{ctx.Validation.ErrorCount} Vulkan validation error(s); the first: {validationError}");
        return new BenchPeakReport(
            Schema,
            Cli.Version,
            command,
            DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            BenchDevice.Of(caps),
            caps, ctx.MatrixUnits.ToString().ToLowerInvariant(), MatrixPeakKernel.Warps, MatrixPeakKernel.TilesM, MatrixPeakKernel.TilesN,
            workgroups, iterations, reps, MatrixPeakKernel.Flops(workgroups, iterations), caps.TimestampsSupported, runs);
    }

    static void Print(IAnsiConsole console, BenchPeakReport r)
    {
        console.WriteLine($"device: {r.Device.Name} ({r.Device.Driver}); matrix units: {r.MatrixUnits}");
        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{r.Workgroups} workgroups x {r.Warps} subgroups x {r.TilesM * r.TilesN} products of 16x16x16 x {r.Iterations} iterations: {r.FlopsPerDispatch / 1e12:F3} TFLOP per dispatch"));
        var table = new Table().AddColumns("fragments", "median ms", "min ms", "TFLOP/s", "");
        foreach (var run in r.Runs)
            table.AddRow(run.Fragments, F(run.Ms.Median), F(run.Ms.Min), F(run.Tflops), run.Ok ? "ok" : $"[red]{run.WrongOutputs} WRONG[/]");
        console.Write(table);
        if (!r.Profiled) console.WriteLine("note: the device records no timestamps: the times are wall-clock, submit and wait included");
    }

    static string F(double v) => v.ToString("F3", CultureInfo.InvariantCulture);
}

internal sealed record BenchPeakReport(
    string Schema, string Implementation, string Command, string Timestamp, BenchDevice Device, DeviceCapabilities Capabilities,
    string MatrixUnits, int Warps, int TilesM, int TilesN, int Workgroups, int Iterations, int Reps, double FlopsPerDispatch, bool Profiled,
    IReadOnlyList<PeakRun> Runs);

/// <summary>One variant: "registers" (fragments loaded once) or "shared" (reloaded every step);
/// the median, min and max of its dispatches, its rate, and whether every output was right.</summary>
internal sealed record PeakRun(string Fragments, TimeStats Ms, double Tflops, bool Ok, int WrongOutputs);
