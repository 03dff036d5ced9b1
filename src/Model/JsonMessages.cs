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
    public static string? Words(string type) => Unwrapped(type) switch
    {
        // Containers by what they hold in JSON, whatever their elements.
        var t when t.EndsWith("[]", StringComparison.Ordinal) || t.Contains("List`1[", StringComparison.Ordinal) => "a list",
        var t when t.Contains("Dictionary`2[", StringComparison.Ordinal) => "an object",
        var t when t.Contains('`') || t.Contains('[') => null,
        "System.Int32" or "System.Int64" => "a whole number",
        "System.Single" or "System.Double" => "a number",
        "System.Boolean" => "true or false",
        "System.String" => "a string",
        _ => null,
    };

    /// <summary>An optional value's type ("System.Nullable`1[System.Int32]") as the value's own.</summary>
    static string Unwrapped(string type) =>
        type.StartsWith("System.Nullable`1[", StringComparison.Ordinal) && type.EndsWith(']') ? type["System.Nullable`1[".Length..^1] : type;

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
