using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace VkPrompt.Bench;

/// <summary>What one benchmark invocation does, for the throughput columns: floating-point
/// operations, and bytes that must cross device memory at least once. Zero where it does not apply.</summary>
public interface IWork
{
    double Flops { get; }
    double Bytes { get; }
}

/// <summary>Work per second, from the benchmark case's <see cref="IWork"/> parameter and its mean time.</summary>
sealed class ThroughputColumn(string name, string legend, Func<IWork, double> amount) : IColumn
{
    public static readonly IColumn Gflops = new ThroughputColumn("GFLOP/s", "Floating-point operations per second, in billions (matrix products count 2·M·N·K)", w => w.Flops);
    public static readonly IColumn Gbps = new ThroughputColumn("GB/s", "Bytes read and written per second, in billions, counting each tensor the op must touch once", w => w.Bytes);

    public string Id => nameof(ThroughputColumn) + name;
    public string ColumnName => name;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => legend;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var work = benchmarkCase.Parameters.Items.Select(p => p.Value).OfType<IWork>().FirstOrDefault();
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (work is null || meanNs is not > 0 || amount(work) == 0) return "-";
        // Units per nanosecond are billions per second.
        return (amount(work) / meanNs.Value).ToString("F2", style.CultureInfo);
    }

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
