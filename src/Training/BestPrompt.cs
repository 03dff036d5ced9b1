using System.Globalization;

namespace VkPrompt.Training;

/// <summary>The best validation score so far, where it was reached, and how many evaluations
/// have not beaten it since (what <see cref="TrainOptions.Patience"/> counts); all of it is in the checkpoint, so a
/// resumed run keeps and stops on the same prompt as an uninterrupted one.</summary>
sealed class BestPrompt
{
    /// <summary>Accuracy where there is one, else minus the loss: higher is better.</summary>
    public double Metric { get; private set; } = double.NegativeInfinity;
    public double Loss { get; private set; } = double.PositiveInfinity;
    public int Step { get; private set; } = -1;
    public int EvaluationsSince { get; private set; }

    /// <summary>Takes an evaluation; true when it is the new best. Equal accuracy with a lower
    /// loss counts as better: exact-match accuracy of generated text stays at one value for many
    /// evaluations early on, and without the tie-break patience would end the run there.</summary>
    public bool Offer(int step, double? accuracy, double loss)
    {
        double metric = accuracy ?? -loss;
        if (metric > Metric || (metric == Metric && loss < Loss))
        {
            (Metric, Loss, Step, EvaluationsSince) = (metric, loss, step, 0);
            return true;
        }
        EvaluationsSince++;
        return false;
    }

    public Dictionary<string, string> Metadata() => new()
    {
        ["best_metric"] = Metric.ToString("R", CultureInfo.InvariantCulture),
        ["best_loss"] = Loss.ToString("R", CultureInfo.InvariantCulture),
        ["best_step"] = Step.ToString(CultureInfo.InvariantCulture),
        ["evaluations_since_best"] = EvaluationsSince.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>From a checkpoint's metadata; one written before the loss and the count were kept
    /// reads as if its best were the last evaluation, with no loss to break a tie.</summary>
    public static BestPrompt Read(IReadOnlyDictionary<string, string> meta) => new()
    {
        Metric = double.Parse(meta["best_metric"], CultureInfo.InvariantCulture),
        Loss = meta.TryGetValue("best_loss", out var l) ? double.Parse(l, CultureInfo.InvariantCulture) : double.PositiveInfinity,
        Step = int.Parse(meta["best_step"], CultureInfo.InvariantCulture),
        EvaluationsSince = meta.TryGetValue("evaluations_since_best", out var n) ? int.Parse(n, CultureInfo.InvariantCulture) : 0,
    };
}
