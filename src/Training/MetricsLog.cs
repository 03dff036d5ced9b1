using System.Text.Json.Nodes;
using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>metrics.jsonl: one object per logged step. A resumed run drops the lines after its
/// checkpoint so the file reads as one uninterrupted run.</summary>
internal sealed class MetricsLog
{
    readonly string path;

    internal MetricsLog(string path, int resumeStep)
    {
        this.path = path;
        var kept = File.Exists(path) ? File.ReadLines(path).Where(l => StepOf(l) is int s && s <= resumeStep).ToList() : [];
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    static int? StepOf(string line)
    {
        try { return JsonNode.Parse(line)?["step"]?.GetValue<int>(); }
        catch (System.Text.Json.JsonException) { return null; }
    }

    internal void Append(StepReport r)
    {
        var o = new JsonObject { ["step"] = r.Step, ["loss"] = r.Loss, ["tokens"] = r.Tokens, ["steps_per_s"] = Math.Round(r.StepsPerSecond, 3) };
        if (r.ValidationLoss is double vl) o["val_loss"] = vl;
        if (r.ValidationAccuracy is double va) o["val_accuracy"] = va;
        File.AppendAllText(path, o.ToJsonString() + "\n");
    }

    /// <summary>The steps a metrics file at <paramref name="path"/> holds (none where there is no
    /// file); a line from before steps counted their tokens reads 0.</summary>
    public static List<StepReport> Read(string path) => !File.Exists(path) ? [] :
        File.ReadLines(path).Select(l => JsonNode.Parse(l)!).Select(n => new StepReport(
            n["step"]!.GetValue<int>(), n["loss"]!.GetValue<double>(), n["tokens"]?.GetValue<int>() ?? 0, n["steps_per_s"]!.GetValue<double>(),
            n["val_loss"]?.GetValue<double>(), n["val_accuracy"]?.GetValue<double>())).ToList();
}
