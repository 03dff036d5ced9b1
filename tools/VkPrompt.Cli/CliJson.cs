using System.Text.Json.Serialization;
using VkPrompt.Runtime;

namespace VkPrompt.Cli;

/// <summary>Every type the CLI prints as JSON, serialized by generated code (no reflection, so a
/// trimmed build keeps working).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(IReadOnlyList<DeviceCapabilities>))]
[JsonSerializable(typeof(Commands.BenchReport))]
[JsonSerializable(typeof(Commands.BenchMatMulReport))]
[JsonSerializable(typeof(Commands.BenchPeakReport))]
internal sealed partial class CliJson : JsonSerializerContext;

/// <summary>JSON Lines output: one compact object per line.</summary>
[JsonSourceGenerationOptions(WriteIndented = false, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(Commands.GeneratedLine))]
internal sealed partial class CliJsonLines : JsonSerializerContext;
