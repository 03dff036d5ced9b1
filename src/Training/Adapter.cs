using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;

namespace VkPrompt.Training;

/// <summary>
/// Writes a prompt as a Hugging Face PEFT prompt-tuning adapter, loadable with
/// <c>PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base), dir)</c>:
/// adapter_model.safetensors (prompt_embeddings, F32 [P, d]) and adapter_config.json.
/// </summary>
internal static class Adapter
{
    public const string WeightsFile = "adapter_model.safetensors";
    public const string ConfigFile = "adapter_config.json";
    /// <summary>The T5X export of the prompt (<see cref="TrainOptions.ExportNpy"/>).</summary>
    public const string NpyFile = "prompt.npy";

    public static void Save(string dir, float[] prompt, T5Config config, string baseModel, string init, bool exportNpy = false)
    {
        Directory.CreateDirectory(dir);
        int d = config.DModel, p = prompt.Length / d;
        SafetensorsWriter.Write(Path.Combine(dir, WeightsFile), [("prompt_embeddings", [p, d], prompt)],
            new Dictionary<string, string> { ["format"] = "pt" });
        var json = new JsonObject
        {
            ["peft_type"] = "PROMPT_TUNING",
            ["task_type"] = "SEQ_2_SEQ_LM",
            ["num_virtual_tokens"] = p,
            ["token_dim"] = d,
            ["num_transformer_submodules"] = 1,
            ["num_attention_heads"] = config.NumHeads,
            ["num_layers"] = config.NumLayers,
            // PEFT knows RANDOM, SAMPLE_VOCAB and TEXT; the exact VkPrompt initialiser is kept beside it.
            ["prompt_tuning_init"] = init switch { "vocab" => "SAMPLE_VOCAB", "random" => "RANDOM", _ when init.StartsWith("text:") => "TEXT", _ => "RANDOM" },
            ["prompt_tuning_init_text"] = init.StartsWith("text:") ? init["text:".Length..] : null,
            ["base_model_name_or_path"] = baseModel,
            ["inference_mode"] = true,
            ["vkprompt_init"] = init,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), json.ToJsonString(new() { WriteIndented = true }) + "\n");
        if (exportNpy) PromptFile.SaveNpy(Path.Combine(dir, NpyFile), prompt, p, d);
    }
}
