using System.Globalization;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>A setting that a training error asks the user to change, named as the library names
/// it (<c>TrainOptions.Resume</c>, or a concept such as "task"). Front ends spell it their own
/// way through <see cref="TrainingException.Describe"/>: the CLI by its flag.</summary>
public sealed record Setting(string Name)
{
    /// <summary>The directory a run writes to (<see cref="TrainingRun"/>'s).</summary>
    public static readonly Setting OutputDirectory = new("output directory");
    /// <summary>How the frozen weights are stored (the precision a <see cref="PromptModel"/> is opened with).</summary>
    public static readonly Setting WeightPrecision = new("weight precision");
    /// <summary>The devices a model split across devices is placed on, one per stage.</summary>
    public static readonly Setting PipelineStages = new("pipeline stages");
    /// <summary>A SuperGLUE task's name (<see cref="SuperGlue.Get"/>).</summary>
    public static readonly Setting Task = new("task");
    /// <summary><see cref="TrainOptions.Resume"/>.</summary>
    public static readonly Setting Resume = Of(nameof(TrainOptions.Resume));
    /// <summary><see cref="TrainOptions.Overwrite"/>.</summary>
    public static readonly Setting Overwrite = Of(nameof(TrainOptions.Overwrite));
    /// <summary><see cref="TrainOptions.PromptLength"/>.</summary>
    public static readonly Setting PromptLength = Of(nameof(TrainOptions.PromptLength));
    /// <summary><see cref="TrainOptions.BatchSize"/>.</summary>
    public static readonly Setting BatchSize = Of(nameof(TrainOptions.BatchSize));
    /// <summary><see cref="TrainOptions.MaxInputLength"/>.</summary>
    public static readonly Setting MaxInputLength = Of(nameof(TrainOptions.MaxInputLength));
    /// <summary><see cref="TrainOptions.Seed"/>.</summary>
    public static readonly Setting Seed = Of(nameof(TrainOptions.Seed));
    /// <summary><see cref="TrainOptions.Init"/>.</summary>
    public static readonly Setting Init = Of(nameof(TrainOptions.Init));
    /// <summary><see cref="TrainOptions.Choices"/>.</summary>
    public static readonly Setting Choices = Of(nameof(TrainOptions.Choices));
    /// <summary><see cref="AdafactorSettings.LearningRate"/>.</summary>
    public static readonly Setting LearningRate = new($"{nameof(AdafactorSettings)}.{nameof(AdafactorSettings.LearningRate)}");
    /// <summary><see cref="AdafactorSettings.ClippingThreshold"/>.</summary>
    public static readonly Setting ClippingThreshold = new($"{nameof(AdafactorSettings)}.{nameof(AdafactorSettings.ClippingThreshold)}");

    static Setting Of(string trainOption) => new($"{nameof(TrainOptions)}.{trainOption}");

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>A training error whose message names <see cref="Setting"/>s: <see cref="Exception.Message"/>
/// spells them as the library does, <see cref="Describe"/> as a front end does.</summary>
public abstract class TrainingException : Exception
{
    readonly FormattableString message;

    /// <param name="message">The message; its <see cref="Setting"/> arguments are what <see cref="Describe"/> renames.</param>
    protected TrainingException(FormattableString message) : base(Render(message, s => s.Name)) => this.message = message;

    /// <summary>The message with every setting it names spelled by <paramref name="name"/>.</summary>
    public string Describe(Func<Setting, string> name) => Render(message, name);

    static string Render(FormattableString message, Func<Setting, string> name) =>
        string.Format(CultureInfo.InvariantCulture, message.Format, message.GetArguments().Select(a => a is Setting s ? name(s) : a).ToArray());
}

/// <summary>A training option that cannot work with this data, model or output directory (an
/// unknown initialiser, class init without labels, an unknown task, a checkpoint of another
/// model). Front ends report it as the user's to fix.</summary>
public sealed class TrainingOptionException(FormattableString message) : TrainingException(message);

/// <summary>The loss (or the validation loss) stopped being a finite number: the run stops there,
/// keeping what it last wrote, rather than training on and saving a prompt of NaNs.</summary>
public sealed class TrainingDivergedException(FormattableString message) : TrainingException(message);
