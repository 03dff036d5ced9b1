using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>
/// Rank classification (the paper's evaluation for classification tasks): each example is scored
/// against every choice and the most likely choice wins. Several prompts are evaluated in one
/// batch over the frozen model, each (example, choice, prompt) triple one row, which is also how
/// the ensemble gets its individual votes.
/// </summary>
internal static class RankClassifier
{
    /// <param name="scorer">Scores the (example, choice, prompt) rows.</param>
    /// <param name="inputs">The examples' input token ids.</param>
    /// <param name="choices">Each choice's token ids, as a target.</param>
    /// <param name="prompts">the prompts to classify with (null: no prompt), of any lengths.</param>
    /// <param name="batchSize">Rows per batch.</param>
    /// <returns>predictions[prompt][example] = index of the chosen choice.</returns>
    public static int[][] Predict(IBatchScorer scorer, IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> choices, PromptSet? prompts, int batchSize) =>
        Predict([scorer], inputs, choices, prompts, batchSize);

    /// <summary>As above, the batches split over <paramref name="scorers"/> (one per device,
    /// <see cref="Scorer.ScoreAll"/>); the predictions are those of one device.</summary>
    public static int[][] Predict(IReadOnlyList<IBatchScorer> scorers, IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> choices, PromptSet? prompts, int batchSize)
    {
        int nc = choices.Count, numPrompts = prompts?.Count ?? 1;
        var rows = new List<(int Example, int Choice, int Prompt)>();
        foreach (int e in HostBatch.ShortestFirst(inputs.Select(x => x.Length).ToList()))
            for (int p = 0; p < numPrompts; p++)
                for (int c = 0; c < nc; c++)
                    rows.Add((e, c, p));
        // Fewer rows than a batch make one batch of that size, not a padded one.
        batchSize = Math.Max(1, Math.Min(batchSize, rows.Count));
        var best = new double[numPrompts, inputs.Count];
        var pred = new int[numPrompts][];
        for (int p = 0; p < numPrompts; p++) pred[p] = new int[inputs.Count];
        for (int p = 0; p < numPrompts; p++)
            for (int e = 0; e < inputs.Count; e++) best[p, e] = double.NegativeInfinity;
        var chunks = rows.Chunk(batchSize).ToList();
        var scores = Scorer.ScoreAll(scorers, chunks.Select(chunk => (
            (IReadOnlyList<EncodedExample>)chunk.Select(r => new EncodedExample(inputs[r.Example], choices[r.Choice])).ToList(),
            (IReadOnlyList<int>?)chunk.Select(r => r.Prompt).ToList())).ToList(), prompts, batchSize);
        for (int k = 0; k < chunks.Count; k++)
            for (int i = 0; i < chunks[k].Length; i++)
            {
                var (e, c, p) = chunks[k][i];
                // Strictly greater: on a tie the earlier choice wins, deterministically.
                if (scores[k][i].LogProb > best[p, e]) { best[p, e] = scores[k][i].LogProb; pred[p][e] = c; }
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

    /// <summary>The distinct targets of <paramref name="examples"/> when they look like class
    /// labels (2 to 20 of them, each seen twice on average), else null.</summary>
    public static List<string>? LabelSet(IReadOnlyList<Example> examples)
    {
        var distinct = examples.Select(e => e.Target!).Distinct().ToList();
        return distinct.Count is >= 2 and <= 20 && examples.Count >= 2 * distinct.Count ? distinct : null;
    }

    /// <summary>The share of <paramref name="predicted"/> equal to <paramref name="gold"/>.</summary>
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
/// when every target is one of the <paramref name="labels"/>, otherwise by exact match of greedy
/// decoding (at most <paramref name="maxTargetLength"/> tokens).</summary>
sealed class Validation(PromptModel model, IBatchScorer scorer, IReadOnlyList<EncodedExample> examples, IReadOnlyList<string> targets,
                        IReadOnlyList<string>? labels, int batchSize, int maxTargetLength)
{
    readonly IReadOnlyList<string>? labels = labels is not null && targets.All(labels.Contains) ? labels
        // Without labels accuracy is exact match of greedy decoding: refused before training where that cannot run.
        : model.Pipeline is null ? null : throw PromptModel.OnOneDeviceOnly("validation by greedy decoding (its targets are not class labels)");
    readonly int batchSize = Math.Min(batchSize, examples.Count);
    // Shortest first pads least; results go back to their examples by index.
    readonly int[] order = HostBatch.ShortestFirst(examples.Select(e => e.InputIds.Length).ToList());

    public (double Loss, double? Accuracy) Evaluate(float[] prompt, int promptLength)
    {
        double lp = 0;
        int tokens = 0;
        var prompts = PromptSet.Stack([prompt], prompt.Length / promptLength);
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
        if (labels is not null)
        {
            var gold = targets.Select(t => labels.ToList().IndexOf(t)).ToList();
            var labelIds = labels.Select(l => model.Tokenizer.Encode(l)).ToList();
            var pred = RankClassifier.Predict(scorer, examples.Select(e => e.InputIds).ToList(), labelIds, prompts, batchSize);
            return (loss, RankClassifier.Accuracy(pred[0], gold));
        }
        var texts = new string[examples.Count];
        foreach (var (k, ids) in GreedyDecoder.Run(model.Weights, order.Select(i => examples[i]).ToList(), prompts, null, batchSize, maxTargetLength))
            texts[order[k]] = model.Tokenizer.Decode(ids);
        return (loss, texts.Zip(targets).Count(x => x.First.Trim() == x.Second.Trim()) / (double)targets.Count);
    }
}
