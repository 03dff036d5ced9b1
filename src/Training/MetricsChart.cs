using ScottPlot;

namespace VkPrompt.Training;

/// <summary>The loss (and validation accuracy) chart written next to the adapter.</summary>
public static class MetricsChart
{
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
        var tmp = path + ".tmp.png";
        plot.SavePng(tmp, 900, 500);
        File.Move(tmp, path, overwrite: true);
    }
}
