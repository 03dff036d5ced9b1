namespace VkPrompt.Model;

/// <summary>A model file is missing, unreadable or malformed; the message names the file and the problem.</summary>
public sealed class ModelFormatException(string path, string message) : Exception($"{path}: {message}")
{
    /// <summary>The file or directory at fault.</summary>
    public string Path { get; } = path;
}

/// <summary>The model computed a NaN or infinity where a number was due (a log-likelihood, a
/// loss): its activations overflowed fp32 with these weights and this prompt. Results built on it
/// would be meaningless (a vote between NaNs, invalid JSON), so it is an error, not a value.</summary>
public sealed class NonFiniteOutputException(string what, double value)
    : Exception($"{what} is {value}: the model's activations overflow fp32 with these weights and this prompt (values far too large for its layers)");
