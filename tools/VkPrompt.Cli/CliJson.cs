using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using VkPrompt.Runtime;

namespace VkPrompt.Cli;

/// <summary>Every type the CLI prints as JSON, serialized by generated code (no reflection, so a
/// trimmed build keeps working).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(IReadOnlyList<DeviceCapabilities>))]
[JsonSerializable(typeof(DeviceCapabilities))]
[JsonSerializable(typeof(Commands.BenchReport))]
[JsonSerializable(typeof(Commands.BenchScalingReport))]
[JsonSerializable(typeof(Commands.BenchMatMulReport))]
[JsonSerializable(typeof(Commands.BenchPeakReport))]
internal sealed partial class CliJson : JsonSerializerContext;

/// <summary>JSON Lines output: one compact object per line.</summary>
[JsonSourceGenerationOptions(WriteIndented = false, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(Commands.GeneratedLine))]
internal sealed partial class CliJsonLines : JsonSerializerContext
{
    /// <summary>Text as people read it: the default encoder escapes for embedding in HTML, so a
    /// generated "&lt;extra_id_0&gt;" or "é" came out as \u003Cextra_id_0\u003E and \u00E9. Still
    /// valid JSON (quotes, backslashes and control characters stay escaped).</summary>
    public static CliJsonLines Readable { get; } = new(new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
}
