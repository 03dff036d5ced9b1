using System.Text.Json;
using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>
/// Reads the official SuperGLUE JSONL files with T5's text-to-text formatting (t5.data.glue_utils:
/// "feature: value" pairs in T5's feature order, labels as words), without the task-name prefix,
/// as the prompt-tuning paper trains them (its "taskless" tasks). T5's order is the features'
/// names sorted, except WiC's, which glue_utils lists; other fields of a line (idx, WiC's
/// word offsets) are not part of the text.
/// </summary>
internal static class SuperGlue
{
    /// <summary>A SuperGLUE task as T5 formats it.</summary>
    /// <param name="Name">The task's name, as <see cref="Get"/> takes it.</param>
    /// <param name="Features">The fields of a line that make the input, in T5's order.</param>
    /// <param name="Labels">The label words, in the order of the official integer labels.</param>
    /// <param name="MacroF1">SuperGLUE scores the task by macro-F1 beside accuracy (CB).</param>
    internal sealed record Task(string Name, string[] Features, string[] Labels, bool MacroF1 = false);

    /// <summary>The supported tasks by name.</summary>
    public static readonly IReadOnlyDictionary<string, Task> Tasks = new Dictionary<string, Task>
    {
        ["boolq"] = new("boolq", ["passage", "question"], ["False", "True"]),
        ["cb"] = new("cb", ["hypothesis", "premise"], ["entailment", "contradiction", "neutral"], MacroF1: true),
        ["rte"] = new("rte", ["hypothesis", "premise"], ["entailment", "not_entailment"]),
        ["wic"] = new("wic", ["sentence1", "sentence2", "word"], ["False", "True"]),
        ["copa"] = new("copa", ["choice1", "choice2", "premise", "question"], ["choice1", "choice2"]),
    };

    /// <summary>The task named <paramref name="name"/> (any case).</summary>
    public static Task Get(string name) => Tasks.TryGetValue(name.ToLowerInvariant(), out var t) ? t
        : throw new TrainingOptionException($"unknown {Setting.Task} '{name}'; supported: {string.Join(", ", Tasks.Keys)}");

    /// <summary>The examples of the official JSONL file <paramref name="path"/> of <paramref name="task"/>, in file order.</summary>
    /// <param name="path">The JSONL file.</param>
    /// <param name="task">Its task.</param>
    /// <param name="requireLabels">training and evaluation need every gold label; predicting
    /// (classify) reads the test split, which has none.</param>
    public static List<Example> Read(string path, Task task, bool requireLabels = true) => JsonLines.Read(path, (root, problem) =>
    {
        var parts = new List<string>();
        foreach (var f in task.Features)
        {
            if (!root.TryGetProperty(f, out var v)) throw problem($"missing field \"{f}\" of a {task.Name} example");
            // An array, object or null would be formatted as its JSON text into the input.
            if (v.ValueKind is JsonValueKind.Array or JsonValueKind.Object or JsonValueKind.Null)
                throw problem($"field \"{f}\" is {v.GetRawText()}; a {task.Name} feature is text");
            parts.Add($"{f}: {v}");
        }
        string? target = null;
        if (root.TryGetProperty("label", out var label))
            target = label.ValueKind switch
            {
                JsonValueKind.True => "True",
                JsonValueKind.False => "False",
                JsonValueKind.Number when label.TryGetInt32(out int i) && i >= 0 && i < task.Labels.Length => task.Labels[i],
                JsonValueKind.String when task.Labels.Contains(label.GetString()) => label.GetString(),
                _ => throw problem($"label {label} is not one of {string.Join(", ", task.Labels)}"),
            };
        else if (requireLabels)
            throw problem("no \"label\" (SuperGLUE's test files have none; train and evaluate on the train and val files)");
        return new Example(string.Join(" ", parts), target);
    });
}
