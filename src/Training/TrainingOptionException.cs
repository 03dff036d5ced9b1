namespace VkPrompt.Training;

/// <summary>A training option that cannot work with this data or model (an unknown initialiser,
/// class init without labels, an unknown task). Front ends report it as the user's to fix.</summary>
public sealed class TrainingOptionException(string message) : Exception(message);
