namespace VkPrompt.Cli;

/// <summary>A mistake in how vkprompt was called that the parser cannot see (options that
/// contradict each other, a value out of range). Reported as one line with exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
