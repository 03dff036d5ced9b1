namespace VkPrompt.Training;

/// <summary>A training option that cannot work with this data or model (an unknown initialiser,
/// class init without labels, an unknown task). Front ends report it as the user's to fix.</summary>
public sealed class TrainingOptionException(string message) : Exception(message);

/// <summary>The loss (or the validation loss) stopped being a finite number: the run stops there,
/// keeping what it last wrote, rather than training on and saving a prompt of NaNs.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
