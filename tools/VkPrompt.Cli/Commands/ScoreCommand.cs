using System.CommandLine;
using VkPrompt.Model;

namespace VkPrompt.Cli.Commands;

internal static class ScoreCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var data = ModelOptions.Data(required: true);
        var prompt = ModelOptions.TaskPrompts();
        var session = new SessionArgs();
        var batch = ModelOptions.BatchSize(8);
        var maxIn = ModelOptions.MaxInputLength();
        var maxOut = ModelOptions.MaxTargetLength();
        var cmd = new Command("score", "Print the log-likelihood of each example's target given its input (teacher forcing), one JSON object per line, in input order: {\"index\", \"logprob\" (sum over target tokens, eos included), \"tokens\"}.")
        {
            model, data, prompt,
        };
        Cli.AddOptions(cmd, [.. session.Options, batch, maxIn, maxOut]);
        cmd.SetAction(parse =>
        {
            string dataPath = parse.GetValue(data)!;
            var examples = DataFile.Read(dataPath);
            int b = ModelOptions.Positive(parse, batch);
            using var s = new ModelSession(parse.GetValue(model)!, session.Read(parse), ModelOptions.Log(parse));
            var enc = s.Model.Encoder(ModelOptions.Positive(parse, maxIn), ModelOptions.Positive(parse, maxOut));
            var encoded = examples.Select(enc.Encode).ToList();
            var (prompts, promptIndex) = PromptArg.ForExamples(parse.GetValue(prompt)!, examples, dataPath, s.Model);
            var results = s.Model.Score(encoded, prompts, promptIndex, b);
            var output = Cli.Out(parse);
            for (int i = 0; i < results.Length; i++)
                output.WriteLine(results[i].JsonLine(i));
            Cli.WarnTruncation(parse, enc);
            return Cli.Ok;
        });
        return cmd;
    }
}
