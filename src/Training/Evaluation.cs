using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>
/// Rank classification (the paper's evaluation for classification tasks): each example is scored
/// against every choice and the most likely choice wins. Several prompts are evaluated in one
/// batch over the frozen model, each (example, choice, prompt) triple one row, which is also how
/// the ensemble gets its individual votes.
/// </summary>
public static class RankClassifier
{
    /// <param name="prompts">the prompts to classify with (null: no prompt), of any lengths.</param>
    /// <returns>predictions[prompt][example] = index of the chosen choice.</returns>
    public static int[][] Predict(Scorer scorer, IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> choices, PromptSet? prompts, int batchSize)
    {
        int nc = choices.Count, numPrompts = prompts?.Count ?? 1;
        var rows = new List<(int Example, int Choice, int Prompt)>();
        foreach (int e in HostBatch.ShortestFirst(inputs.Select(x => x.Length).ToList()))
            for (int p = 0; p < numPrompts; p++)
                for (int c = 0; c < nc; c++)
                    rows.Add((e, c, p));
        // Fewer rows than a batch make one batch of that size, not a padded one.
        batchSize = Math.Min(batchSize, rows.Count);
        var best = new double[numPrompts, inputs.Count];
        var pred = new int[numPrompts][];
        for (int p = 0; p < numPrompts; p++) pred[p] = new int[inputs.Count];
        for (int p = 0; p < numPrompts; p++)
            for (int e = 0; e < inputs.Count; e++) best[p, e] = double.NegativeInfinity;
        for (int start = 0; start < rows.Count; start += batchSize)
        {
            var chunk = rows.Skip(start).Take(batchSize).ToList();
            var batch = chunk.Select(r => new EncodedExample(inputs[r.Example], choices[r.Choice])).ToList();
            var scores = scorer.Score(batch, prompts, chunk.Select(r => r.Prompt).ToList(), batchSize);
            for (int i = 0; i < chunk.Count; i++)
            {
                var (e, c, p) = chunk[i];
                // Strictly greater: on a tie the earlier choice wins, deterministically.
                if (scores[i].LogProb > best[p, e]) { best[p, e] = scores[i].LogProb; pred[p][e] = c; }
            }
        }
        return pred;
    }

    /// <summary>The paper's ensemble: each example takes the choice most prompts picked; a tie
    /// goes to the tied choice the lowest-numbered prompt voted for.</summary>
    public static int[] MajorityVote(int[][] predictions, int numChoices)
    {
        int n = predictions[0].Length;
        var result = new int[n];
        for (int e = 0; e < n; e++)
        {
            var votes = new int[numChoices];
            foreach (var p in predictions) votes[p[e]]++;
            int max = votes.Max();
            result[e] = predictions.Select(p => p[e]).First(c => votes[c] == max);
        }
        return result;
    }

    public static double Accuracy(IReadOnlyList<int> predicted, IReadOnlyList<int> gold) =>
        predicted.Zip(gold).Count(x => x.First == x.Second) / (double)predicted.Count;

    /// <summary>The F1 of each class averaged over all <paramref name="numClasses"/> (T5's
    /// mean_multiclass_f1, SuperGLUE's metric for CB beside accuracy); a class neither predicted
    /// nor present scores 0, as scikit-learn's fbeta_score does.</summary>
    public static double MacroF1(IReadOnlyList<int> predicted, IReadOnlyList<int> gold, int numClasses)
    {
        double sum = 0;
        for (int c = 0; c < numClasses; c++)
        {
            int tp = predicted.Zip(gold).Count(x => x.First == c && x.Second == c);
            int fp = predicted.Zip(gold).Count(x => x.First == c && x.Second != c);
            int fn = predicted.Zip(gold).Count(x => x.First != c && x.Second == c);
            double precision = tp + fp == 0 ? 0 : tp / (double)(tp + fp), recall = tp + fn == 0 ? 0 : tp / (double)(tp + fn);
            sum += precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
        }
        return sum / numClasses;
    }
}

/// <summary>Validation during training: mean token loss, and accuracy by rank classification
/// when the targets come from a label set, otherwise by exact match of greedy decoding.</summary>
public sealed class Validation(Scorer scorer, IReadOnlyList<EncodedExample> examples, IReadOnlyList<string> targets,
                               IReadOnlyList<string>? labels, IReadOnlyList<int[]>? labelIds, Func<float[], int, IReadOnlyList<string>>? generate, int batchSize)
{
    public (double Loss, double? Accuracy) Evaluate(float[] prompt, int promptLength)
    {
        double lp = 0;
        int tokens = 0;
        var prompts = PromptSet.Stack([prompt], prompt.Length / promptLength);
        batchSize = Math.Min(batchSize, examples.Count);
        var order = HostBatch.ShortestFirst(examples.Select(e => e.InputIds.Length).ToList());
        for (int s = 0; s < examples.Count; s += batchSize)
        {
            var batch = order.Skip(s).Take(batchSize).Select(i => examples[i]).ToList();
            foreach (var r in scorer.Score(batch, prompts, batchSize: batchSize))
            {
                lp += r.LogProb;
                tokens += r.Tokens;
            }
        }
        double loss = -lp / tokens;
        if (labels is not null && labelIds is not null)
        {
            var gold = targets.Select(t => labels.ToList().IndexOf(t)).ToList();
            var pred = RankClassifier.Predict(scorer, examples.Select(e => e.InputIds).ToList(), labelIds, prompts, batchSize);
            return (loss, RankClassifier.Accuracy(pred[0], gold));
        }
        if (generate is not null)
        {
            var outputs = generate(prompt, promptLength);
            return (loss, outputs.Zip(targets).Count(x => x.First.Trim() == x.Second.Trim()) / (double)targets.Count);
        }
        return (loss, null);
    }
}
