using ScottPlot;
using VkPrompt.Model;
using VkPrompt.Training;

namespace VkPrompt.Cli;

/// <summary>The loss (and validation accuracy) chart train writes next to the adapter. The CLI
/// draws it, not the library, so library users do not carry ScottPlot and SkiaSharp's native
/// libraries for it.</summary>
internal static class MetricsChart
{
    public const string File = "training.png";

    /// <summary>Draws the metrics log of the run in <paramref name="directory"/> beside it.</summary>
    public static void Write(TrainingDirectory directory) =>
        Write(Path.Combine(directory.Path, File), MetricsLog.Read(Path.Combine(directory.Path, TrainingDirectory.MetricsFile)));

    public static void Write(string path, IReadOnlyList<StepReport> reports)
    {
        if (reports.Count == 0) return;
        var plot = new Plot();
        var loss = plot.Add.Scatter(reports.Select(r => (double)r.Step).ToArray(), reports.Select(r => r.Loss).ToArray());
        loss.LegendText = "training loss";
        loss.MarkerSize = 0;
        var val = reports.Where(r => r.ValidationLoss is not null).ToList();
        if (val.Count > 0)
        {
            var vl = plot.Add.Scatter(val.Select(r => (double)r.Step).ToArray(), val.Select(r => r.ValidationLoss!.Value).ToArray());
            vl.LegendText = "validation loss";
        }
        var acc = val.Where(r => r.ValidationAccuracy is not null).ToList();
        if (acc.Count > 0)
        {
            var a = plot.Add.Scatter(acc.Select(r => (double)r.Step).ToArray(), acc.Select(r => r.ValidationAccuracy!.Value).ToArray());
            a.LegendText = "validation accuracy";
            a.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = "accuracy";
            // A fixed 0..1 scale, so a change of a few examples does not look like a leap.
            plot.Axes.SetLimitsY(0, 1, plot.Axes.Right);
        }
        plot.Axes.Bottom.Label.Text = "step";
        plot.Axes.Left.Label.Text = "loss (mean per target token)";
        plot.Title("VkPrompt prompt tuning");
        plot.ShowLegend();
        // Through AtomicFile, as every file of a run: a failed write (a full disk) leaves neither a
        // half chart nor a temporary file.
        using var file = AtomicFile.Create(path);
        file.Stream.Write(plot.GetImageBytes(900, 500, ImageFormat.Png));
        file.Commit();
    }
}
