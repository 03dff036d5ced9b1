using System.Text.Json;
using VkPrompt.Model.Safetensors;

namespace VkPrompt.Model;

/// <summary>Soft prompts saved by VkPrompt, PEFT or T5X: a PEFT adapter directory, a .safetensors
/// file with a <c>prompt_embeddings</c> tensor, or a float32 .npy.</summary>
public static class PromptFile
{
    /// <summary>The tensor that holds the prompt in a .safetensors file, as PEFT names it.</summary>
    public const string TensorName = "prompt_embeddings";

    /// <summary>The encoder prompt, row-major [promptLength, dModel]; every value finite.</summary>
    public static float[] Load(string path, int dModel, out int promptLength)
    {
        var full = Path.GetFullPath(path);
        var prompt = LoadAny(full, dModel, out promptLength);
        CheckFinite(full, prompt, dModel);
        return prompt;
    }

    /// <summary>A NaN or infinity (a diverged run's prompt, a damaged file) would turn every score
    /// and gradient it touches into NaN; saying where, and in which file, is more use than a NaN
    /// loss later that reads as a diverged run.</summary>
    internal static void CheckFinite(string path, float[] prompt, int dModel)
    {
        int bad = Array.FindIndex(prompt, v => !float.IsFinite(v));
        if (bad >= 0) throw new ModelFormatException(path, $"prompt value [{bad / dModel}, {bad % dModel}] is {prompt[bad]}; a prompt must be finite");
    }

    static float[] LoadAny(string full, int dModel, out int promptLength)
    {
        if (Directory.Exists(full)) return LoadPeft(full, dModel, out promptLength);
        if (!File.Exists(full)) throw new ModelFormatException(full, "prompt file not found");
        if (full.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return LoadSafetensors(full, dModel, adapter: null, out promptLength);
        if (full.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
        {
            var (data, shape) = NpyFile.Read(full);
            if (shape.Length != 2) throw new ModelFormatException(full, $"prompt is [{string.Join(", ", shape)}]; expected [prompt_length, d_model]");
            CheckShape(full, shape[0], shape[1], dModel);
            promptLength = checked((int)shape[0]);
            return data;
        }
        throw new ModelFormatException(full, "is not a prompt: expected a PEFT adapter directory, a .safetensors file or a .npy file");
    }

    /// <summary>Saves [rows, cols] as a T5X-style float32 .npy, atomically.</summary>
    public static void SaveNpy(string path, ReadOnlySpan<float> data, int rows, int cols) => NpyFile.Write(path, data, [rows, cols]);

    static float[] LoadPeft(string dir, int dModel, out int promptLength)
    {
        var weights = Path.Combine(dir, "adapter_model.safetensors");
        if (!File.Exists(weights))
        {
            throw new ModelFormatException(dir, File.Exists(Path.Combine(dir, "adapter_model.bin"))
                ? "holds only adapter_model.bin; VkPrompt reads safetensors: re-save the adapter with save_pretrained(dir, safe_serialization=True)"
                : "has no adapter_model.safetensors");
        }
        var configPath = Path.Combine(dir, "adapter_config.json");
        AdapterConfigJson? config = null;
        if (File.Exists(configPath))
        {
            try { config = JsonSerializer.Deserialize(File.ReadAllBytes(configPath), ModelJsonContext.Default.AdapterConfigJson); }
            catch (JsonException e) { throw new ModelFormatException(configPath, $"not a valid adapter config: {JsonMessages.Describe(e)}"); }
            // P-tuning saves the output of its prompt encoder, which is used as a prompt the same way.
            if (config?.PeftType is { } type && type is not ("PROMPT_TUNING" or "P_TUNING"))
                throw new ModelFormatException(configPath, $"peft_type is {type}, not a soft prompt (PROMPT_TUNING)");
        }
        return LoadSafetensors(weights, dModel, config is null ? null : (configPath, config), out promptLength);
    }

    /// <summary>With an adapter config, keeps the first num_virtual_tokens rows: for a seq2seq
    /// model PEFT stores one prompt per transformer submodule (encoder first, then decoder), and
    /// VkPrompt prompts only the encoder.</summary>
    static float[] LoadSafetensors(string path, int dModel, (string Path, AdapterConfigJson Json)? adapter, out int promptLength)
    {
        using var file = SafetensorsFile.Open(path);
        if (!file.Tensors.TryGetValue(TensorName, out var info))
            throw new ModelFormatException(path, $"has no tensor {TensorName} (it holds: {string.Join(", ", file.Tensors.Keys)})");
        if (info.Shape.Length != 2) throw new ModelFormatException(path, $"prompt is {info.ShapeText}; expected [prompt_length, d_model]");
        long stored = info.Shape[0];
        CheckShape(path, stored, info.Shape[1], dModel);

        long length = stored;
        if (adapter is var (configPath, json))
        {
            // Fields that disagree with the tensor say the config belongs to another adapter;
            // reading the tensor anyway would use a prompt its author did not save.
            if (json.TokenDim is int dim && dim != info.Shape[1])
                throw new ModelFormatException(configPath, $"token_dim is {dim} but {TensorName} is {info.ShapeText}");
            if (json.NumTransformerSubmodules is int m && m < 1)
                throw new ModelFormatException(configPath, $"num_transformer_submodules is {m}; it must be at least 1");
            if (json.NumVirtualTokens is int n)
            {
                if (n < 1) throw new ModelFormatException(configPath, $"num_virtual_tokens is {n}; a prompt needs at least 1 row");
                int submodules = json.NumTransformerSubmodules ?? 1;
                if (stored != n && stored != (long)n * submodules && stored != 2L * n)
                    throw new ModelFormatException(path, $"prompt has {stored} rows but adapter_config.json says num_virtual_tokens {n} and num_transformer_submodules {submodules}");
                length = n;
            }
        }
        promptLength = checked((int)length);
        var data = new float[checked(promptLength * dModel)];
        file.ReadFloat32(TensorName, data);
        return data;
    }

    static void CheckShape(string path, long rows, long width, int dModel)
    {
        // A prompt of 0 rows leaves nothing to train or prepend and empty buffers downstream.
        if (rows < 1) throw new ModelFormatException(path, $"prompt is [{rows}, {width}]; a prompt needs at least 1 row");
        if (width != dModel) throw new ModelFormatException(path, $"prompt is [{rows}, {width}] but the model's d_model is {dModel}");
    }
}
