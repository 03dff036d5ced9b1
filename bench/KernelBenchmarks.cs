using BenchmarkDotNet.Attributes;
using VkPrompt.Cli;
using VkPrompt.Runtime;

namespace VkPrompt.Bench;

/// <summary>Each kernel of the training step alone, recorded once in a command graph and replayed:
/// a replay is one submit and a wait, as inside a step, on VKPROMPT_DEVICE (default: auto).</summary>
public class KernelBenchmarks
{
    [ParamsSource(nameof(Cases))]
    public KernelCase Case { get; set; } = null!;

    /// <summary>Every case, with 16-bit weights where the device reads them (asked of it here).</summary>
    public static IEnumerable<KernelCase> Cases => KernelCase.All(Workload.FromEnvironment(), Workload.SelectedDevice());

    GpuContext ctx = null!;
    Operands operands = null!;
    CommandGraph graph = null!;

    [GlobalSetup]
    public void Setup()
    {
        ctx = GpuContext.Create(EnvironmentSettings.GpuOptions());
        operands = new Operands(ctx);
        graph = new CommandGraph(ctx, profiling: false);
        Case.Append(graph, operands);
        // The first run records the command buffer; the measured ones only replay it.
        graph.Run();
    }

    [Benchmark]
    public void Replay() => graph.Run();

    [GlobalCleanup]
    public void Cleanup()
    {
        graph.Dispose();
        operands.Dispose();
        ctx.Dispose();
    }
}
