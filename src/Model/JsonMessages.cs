using System.Text.Json;
using System.Text.RegularExpressions;

namespace VkPrompt.Model;

/// <summary>System.Text.Json's and System.CommandLine's messages in the words of the files and
/// options the user wrote: they name .NET types ("System.Nullable`1[System.Int32]") the user
/// never saw.</summary>
internal static partial class JsonMessages
{
    /// <summary>What a value of .NET type <paramref name="type"/> is to the user ("a whole number");
    /// null for a type with no plainer name.</summary>
    public static string? Words(string type) => type switch
    {
        _ when type.Contains("Int32", StringComparison.Ordinal) || type.Contains("Int64", StringComparison.Ordinal) => "a whole number",
        _ when type.Contains("Single", StringComparison.Ordinal) || type.Contains("Double", StringComparison.Ordinal) => "a number",
        _ when type.Contains("Boolean", StringComparison.Ordinal) => "true or false",
        _ when type.Contains("String", StringComparison.Ordinal) => "a string",
        _ => null,
    };

    /// <summary>A JSON file's problem: a value of the wrong type as "d_model (line 1) is not a
    /// whole number"; anything else as System.Text.Json says it.</summary>
    public static string Describe(JsonException e)
    {
        var m = NotConverted().Match(e.Message);
        return m.Success && e.Path is { Length: > 1 } path && Words(m.Groups[1].Value) is { } words
            ? $"{path.TrimStart('$').TrimStart('.')} (line {e.LineNumber + 1}) is not {words}"
            : e.Message;
    }

    [GeneratedRegex(@"^The JSON value could not be converted to ([^.\s]+(?:\.[^.\s]+)*)\.")]
    private static partial Regex NotConverted();
}
