using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Native;

/// <summary>
/// vkp_trainer_create's options JSON: the options of <c>vkprompt train</c> that shape a trainer,
/// by their long names with '-' as '_', into a <see cref="TrainOptions"/>. The CLI's parser
/// (System.CommandLine, Spectre.Console) is an executable's and not part of this library, so the
/// names are mapped here, with the CLI's defaults (TrainOptions' own) and its checks
/// (<see cref="AdafactorSettings.Validate"/>). Read with JsonDocument: no reflection under AOT.
/// </summary>
internal static class TrainerOptions
{
    /// <summary>What the trainer takes: every option of <c>vkprompt train</c> that is about the
    /// prompt, the data's encoding or the optimizer.</summary>
    static readonly string[] Known =
    [
        "init", "prompt_length", "steps", "batch_size", "seed", "no_shuffle", "dropout", "max_input_length", "max_target_length",
        "choices", "lr", "weight_decay", "decay_rate", "clip", "epsilon1", "min_dim_to_factor", "step_offset", "recompute",
    ];

    /// <summary>Options of <c>vkprompt train</c> about the run around the steps (files, device,
    /// validation, checkpoints), which an embedding host does itself.</summary>
    static readonly string[] OfTheRun =
    [
        "model", "train", "validation", "output", "device", "memory_cap", "precision", "attention", "eval_every", "patience",
        "save_every", "resume", "overwrite", "task", "export_npy", "activations",
    ];

    /// <summary>The option a training error's <see cref="Setting"/> is set by.</summary>
    public static string NameOf(Setting s)
    {
        if (s == Setting.LearningRate) return "lr";
        if (s == Setting.ClippingThreshold) return "clip";
        if (s == Setting.WeightPrecision) return "precision (vkp_model_open2)";
        string name = s.Name[(s.Name.LastIndexOf('.') + 1)..];
        // TrainOptions.PromptLength -> prompt_length
        return string.Concat(name.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "_" : "") + char.ToLowerInvariant(c) : c.ToString()));
    }

    public static TrainOptions Parse(string? json)
    {
        var o = new TrainOptions();
        if (string.IsNullOrWhiteSpace(json)) return o;
        using var doc = JsonDocument.Parse(json);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new NativeArgumentException($"options_json must be a JSON object, got {doc.RootElement.ValueKind}");
        var opt = o.Optimizer;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            switch (p.Name)
            {
                case "init": o = o with { Init = Str(p) }; break;
                case "prompt_length": o = o with { PromptLength = Positive(p) }; break;
                case "steps": o = o with { Steps = Positive(p) }; break;
                case "batch_size": o = o with { BatchSize = Positive(p) }; break;
                case "seed": o = o with { Seed = Int(p) }; break;
                case "no_shuffle": o = o with { Shuffle = !Bool(p) }; break;
                case "dropout":
                    float rate = Float(p);
                    if (!(rate is >= 0 and < 1)) throw Bad(p, "must be in [0, 1)");
                    o = o with { Dropout = rate };
                    break;
                case "max_input_length": o = o with { MaxInputLength = Positive(p) }; break;
                case "max_target_length": o = o with { MaxTargetLength = Positive(p) }; break;
                case "choices": o = o with { Choices = Choices(p) }; break;
                case "lr": opt = opt with { LearningRate = Float(p) }; break;
                case "weight_decay": opt = opt with { WeightDecay = Float(p) }; break;
                case "decay_rate": opt = opt with { DecayRate = Float(p) }; break;
                case "clip": opt = opt with { ClippingThreshold = Float(p) }; break;
                case "epsilon1": opt = opt with { Epsilon1 = Float(p) }; break;
                case "min_dim_to_factor": opt = opt with { MinDimToFactor = Int(p) }; break;
                case "step_offset":
                    int offset = Int(p);
                    if (offset < 0) throw Bad(p, "must be at least 0");
                    o = o with { StepOffset = offset };
                    break;
                case "recompute": o = o with { ActivationMode = Bool(p) ? ActivationMode.Recompute : ActivationMode.Store }; break;
                default:
                    if (OfTheRun.Contains(p.Name))
                        throw new NativeArgumentException($"option '{p.Name}' is one of a training run's, not of a trainer's: the host does it (vkp_model_open2, vkp_trainer_save_adapter); the trainer's options are {string.Join(", ", Known)}");
                    throw new NativeArgumentException($"unknown option '{p.Name}'; the trainer's options are {string.Join(", ", Known)}");
            }
        }
        try
        {
            opt.Validate(property => property switch
            {
                nameof(AdafactorSettings.LearningRate) => "lr",
                nameof(AdafactorSettings.WeightDecay) => "weight_decay",
                nameof(AdafactorSettings.DecayRate) => "decay_rate",
                nameof(AdafactorSettings.ClippingThreshold) => "clip",
                nameof(AdafactorSettings.Epsilon1) => "epsilon1",
                nameof(AdafactorSettings.MinDimToFactor) => "min_dim_to_factor",
                _ => property,
            });
        }
        catch (ArgumentException e) { throw new NativeArgumentException(e.Message); }
        return o with { Optimizer = opt };
    }

    static NativeArgumentException Bad(JsonProperty p, string what) =>
        new($"option '{p.Name}' {what}, got {p.Value.GetRawText()}");

    static string Str(JsonProperty p) => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw Bad(p, "must be a string");

    static bool Bool(JsonProperty p) => p.Value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Bad(p, "must be true or false"),
    };

    static int Int(JsonProperty p) =>
        p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int v) ? v : throw Bad(p, "must be an integer");

    static int Positive(JsonProperty p) => Int(p) is var v and > 0 ? v : throw Bad(p, "must be at least 1");

    static float Float(JsonProperty p) =>
        p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetDouble(out double v) && float.IsFinite((float)v) ? (float)v : throw Bad(p, "must be a finite number");

    /// <summary>The class labels, as the CLI's --choices takes them ("a,b") or as a JSON array.</summary>
    static List<string> Choices(JsonProperty p)
    {
        var list = p.Value.ValueKind switch
        {
            JsonValueKind.String => p.Value.GetString()!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList(),
            JsonValueKind.Array => p.Value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad(p, "must list strings")).ToList(),
            _ => throw Bad(p, "must be a comma-separated string or an array of strings"),
        };
        if (list.Count < 2) throw Bad(p, "needs at least two labels");
        if (list.Distinct().Count() != list.Count) throw Bad(p, "lists a label twice");
        return list;
    }
}
