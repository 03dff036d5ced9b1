using System.CommandLine;
using System.Globalization;
using VkPrompt.Model;

namespace VkPrompt.Cli.Commands;

internal static class ScoreCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var data = ModelOptions.Data(required: true);
        var prompt = ModelOptions.Prompt();
        var device = Cli.DeviceOption();
        var precision = ModelOptions.Precision();
        var attention = ModelOptions.Attention();
        var batch = ModelOptions.BatchSize(8);
        var maxIn = ModelOptions.MaxInputLength();
        var maxOut = ModelOptions.MaxTargetLength();
        var cmd = new Command("score", "Print the log-likelihood of each example's target given its input (teacher forcing), one JSON object per line, in input order: {\"index\", \"logprob\" (sum over target tokens, eos included), \"tokens\"}.")
        {
            model, data, prompt, device, precision, attention, batch, maxIn, maxOut,
        };
        cmd.SetAction(parse =>
        {
            var examples = DataFile.Read(parse.GetValue(data)!);
            // A file smaller than a batch is one batch of its own size: padding it out would spend
            // the memory and time of examples that are not there.
            int b = Math.Min(ModelOptions.Positive(parse, batch), examples.Count);
            using var s = new ModelSession(parse.GetValue(model)!, parse.GetValue(device)!, ModelOptions.ReadAttention(parse, attention), ModelOptions.Log(parse), parse.GetValue(precision)!);
            var enc = new ExampleEncoder(s.Tokenizer, ModelOptions.Positive(parse, maxIn), ModelOptions.Positive(parse, maxOut));
            var encoded = examples.Select(enc.Encode).ToList();
            var (promptData, p) = PromptArg.Load(parse.GetValue(prompt), s.DModel);
            using var scorer = new Scorer(s.Weights);
            var output = Cli.Out(parse);
            for (int start = 0; start < encoded.Count; start += b)
            {
                var chunk = encoded.Skip(start).Take(b).ToList();
                var results = scorer.Score(chunk, promptData, p, batchSize: b);
                for (int i = 0; i < results.Length; i++)
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"index\": {start + i}, \"logprob\": {results[i].LogProb:R}, \"tokens\": {results[i].Tokens}}}"));
            }
            if (enc.TruncatedInputs + enc.TruncatedTargets > 0)
                parse.InvocationConfiguration.Error.WriteLine($"warning: {enc.Report()}");
            return Cli.Ok;
        });
        return cmd;
    }
}

/// <summary>--prompt as data: null when absent.</summary>
internal static class PromptArg
{
    public static (float[]? Data, int Length) Load(string? path, int dModel)
    {
        if (path is null) return (null, 0);
        var data = PromptFile.Load(path, dModel, out int length);
        return (data, length);
    }
}
