namespace VkPrompt.Model;

/// <summary>A model file is missing, unreadable or malformed; the message names the file and the problem.</summary>
public sealed class ModelFormatException(string path, string message) : Exception($"{path}: {message}")
{
    public string Path { get; } = path;
}
