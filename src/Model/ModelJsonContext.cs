using System.Text.Json;
using System.Text.Json.Serialization;

namespace VkPrompt.Model;

/// <summary>Source-generated (de)serializers for the JSON files of a model directory, so that
/// reading them needs no reflection and the CLI can be trimmed.</summary>
[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(T5ConfigJson))]
[JsonSerializable(typeof(SafetensorsIndexJson))]
[JsonSerializable(typeof(AdapterConfigJson))]
[JsonSerializable(typeof(TokenizerConfigJson))]
internal sealed partial class ModelJsonContext : JsonSerializerContext;

/// <summary>model.safetensors.index.json of a sharded checkpoint.</summary>
internal sealed class SafetensorsIndexJson
{
    [JsonPropertyName("weight_map")] public Dictionary<string, string>? WeightMap { get; set; }
}

/// <summary>The fields of a PEFT adapter_config.json that locate the encoder prompt.</summary>
internal sealed class AdapterConfigJson
{
    [JsonPropertyName("peft_type")] public string? PeftType { get; set; }
    [JsonPropertyName("num_virtual_tokens")] public int? NumVirtualTokens { get; set; }
    [JsonPropertyName("num_transformer_submodules")] public int? NumTransformerSubmodules { get; set; }
    [JsonPropertyName("token_dim")] public int? TokenDim { get; set; }
}

/// <summary>The fields of tokenizer_config.json (and the tokenizer_class of config.json) that choose and shape the
/// tokenizer.</summary>
internal sealed class TokenizerConfigJson
{
    [JsonPropertyName("tokenizer_class")] public string? TokenizerClass { get; set; }
    [JsonPropertyName("extra_ids")] public int? ExtraIds { get; set; }
    /// <summary>Strings, or AddedToken objects with a "content"; read only for ByT5, so no T5 tokenizer fails on its form.</summary>
    [JsonPropertyName("additional_special_tokens")] public JsonElement? AdditionalSpecialTokens { get; set; }
}
