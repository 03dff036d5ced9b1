using System.CommandLine;
using System.Text.Json;
using VkPrompt.Model;

namespace VkPrompt.Cli.Commands;

internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var prompt = ModelOptions.TaskPrompts();
        var input = new Option<string?>("--input", "-i") { Description = "One input text." };
        var data = ModelOptions.Data(required: false);
        data.Description = "JSONL file with an \"input\" per line (targets, if present, are ignored), and a \"prompt\" where several --prompt are given.";
        var session = new SessionArgs(spread: false);
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Stop after this many tokens if </s> has not come. Default: 32.", DefaultValueFactory = _ => 32 };
        var batch = ModelOptions.BatchSize(8);
        var maxIn = ModelOptions.MaxInputLength();
        var cmd = new Command("generate", "Greedy decoding with a key/value cache: prints the generated text, one JSON object per input ({\"index\", \"text\", \"ids\"}).")
        {
            model, prompt, input, data,
        };
        Cli.AddOptions(cmd, [.. session.Options, maxNew, batch, maxIn]);
        cmd.SetAction(parse =>
        {
            string? i = parse.GetValue(input), d = parse.GetValue(data);
            if ((i is null) == (d is null)) throw new UsageException("give exactly one of --input or --data");
            if (i is not null && parse.GetValue(prompt)!.Length > 1)
                throw new UsageException("--input takes one --prompt; several prompts serve a --data file whose lines name theirs");
            var examples = i is not null ? [new Example(i, null)] : DataFile.Read(d!, requireTargets: false);
            int b = ModelOptions.Positive(parse, batch), n = ModelOptions.Positive(parse, maxNew);
            using var s = new ModelSession(parse.GetValue(model)!, session.Read(parse), ModelOptions.Log(parse));
            var (prompts, promptIndex) = PromptArg.ForExamples(parse.GetValue(prompt)!, examples, d ?? "--input", s.Model);
            var enc = s.Model.Encoder(ModelOptions.Positive(parse, maxIn), 1);
            var encoded = examples.Select(x => enc.Encode(x.Input, "")).ToList();
            Cli.WarnTruncation(parse, enc);
            var output = Cli.Out(parse);
            foreach (var (index, text, ids) in s.Model.Generate(encoded, prompts, promptIndex, b, n))
                output.WriteLine(JsonSerializer.Serialize(new GeneratedLine(index, text, ids), CliJsonLines.Readable.GeneratedLine));
            return Cli.Ok;
        });
        return cmd;
    }
}

internal sealed record GeneratedLine(int Index, string Text, int[] Ids);
