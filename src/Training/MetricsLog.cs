using System.Text.Json.Nodes;
using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>metrics.jsonl: one object per logged step. A resumed run drops the lines after its
/// checkpoint so the file reads as one uninterrupted run.</summary>
/// <remarks>A line that is not a complete step record is tolerated, not an error: kill -9 during
/// an append leaves a torn last line that a resume must get past (the crash promise of
/// docs/reliability.md), and the file is VkPrompt's own log, read back only to chart it, so a
/// stray line (issue 21 finding 7) must not fail a run whose training already finished. A resumed
/// run drops such lines with the steps after its checkpoint; the chart skips them.</remarks>
internal sealed class MetricsLog
{
    readonly string path;

    internal MetricsLog(string path, int resumeStep)
    {
        this.path = path;
        var kept = File.Exists(path) ? File.ReadLines(path).Where(l => Parse(l) is { } r && r.Step <= resumeStep).ToList() : [];
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    /// <summary>The step a line records, or null where it is not one as <see cref="Append"/> writes it.</summary>
    static StepReport? Parse(string line)
    {
        try
        {
            if (JsonNode.Parse(line) is not JsonObject n || n["step"] is null || n["loss"] is null || n["steps_per_s"] is null) return null;
            return new StepReport(n["step"]!.GetValue<int>(), n["loss"]!.GetValue<double>(), n["tokens"]?.GetValue<int>() ?? 0, n["steps_per_s"]!.GetValue<double>(),
                                  n["val_loss"]?.GetValue<double>(), n["val_accuracy"]?.GetValue<double>());
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { return null; }
    }

    internal void Append(StepReport r)
    {
        var o = new JsonObject { ["step"] = r.Step, ["loss"] = r.Loss, ["tokens"] = r.Tokens, ["steps_per_s"] = Math.Round(r.StepsPerSecond, 3) };
        if (r.ValidationLoss is double vl) o["val_loss"] = vl;
        if (r.ValidationAccuracy is double va) o["val_accuracy"] = va;
        File.AppendAllText(path, o.ToJsonString() + "\n");
    }

    /// <summary>The steps a metrics file at <paramref name="path"/> holds (none where there is no
    /// file), lines that are not step records skipped; a line from before steps counted their
    /// tokens reads 0.</summary>
    public static List<StepReport> Read(string path) => !File.Exists(path) ? [] : File.ReadLines(path).Select(Parse).OfType<StepReport>().ToList();
}
