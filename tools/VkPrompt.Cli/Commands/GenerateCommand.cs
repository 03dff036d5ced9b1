using System.CommandLine;
using System.Text.Json;
using VkPrompt.Model;

namespace VkPrompt.Cli.Commands;

internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var prompt = ModelOptions.Prompt();
        var input = new Option<string?>("--input", "-i") { Description = "One input text." };
        var data = ModelOptions.Data(required: false);
        data.Description = "JSONL file with an \"input\" per line (targets, if present, are ignored).";
        var device = Cli.DeviceOption();
        var precision = ModelOptions.Precision();
        var attention = ModelOptions.Attention();
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Stop after this many tokens if </s> has not come. Default: 32.", DefaultValueFactory = _ => 32 };
        var batch = ModelOptions.BatchSize(8);
        var maxIn = ModelOptions.MaxInputLength();
        var cmd = new Command("generate", "Greedy decoding with a key/value cache: prints the generated text, one JSON object per input ({\"index\", \"text\", \"ids\"}).")
        {
            model, prompt, input, data, device, precision, attention, maxNew, batch, maxIn,
        };
        cmd.SetAction(parse =>
        {
            string? i = parse.GetValue(input), d = parse.GetValue(data);
            if ((i is null) == (d is null)) throw new UsageException("give exactly one of --input or --data");
            var inputs = i is not null ? [i] : DataFile.Read(d!, requireTargets: false).Select(e => e.Input).ToList();
            int b = ModelOptions.Positive(parse, batch), n = ModelOptions.Positive(parse, maxNew);
            using var s = new ModelSession(parse.GetValue(model)!, parse.GetValue(device)!, ModelOptions.ReadAttention(parse, attention), ModelOptions.Log(parse), parse.GetValue(precision)!);
            var (promptData, p) = PromptArg.Load(parse.GetValue(prompt), s.DModel);
            var enc = new ExampleEncoder(s.Tokenizer, ModelOptions.Positive(parse, maxIn), 1);
            var encoded = inputs.Select(x => enc.Encode(x, "")).ToList();
            var output = Cli.Out(parse);
            foreach (var (index, ids) in GreedyDecoder.Run(s.Weights, encoded, promptData, p, b, n))
                output.WriteLine(JsonSerializer.Serialize(new GeneratedLine(index, s.Tokenizer.Decode(ids), ids.ToArray()), CliJsonLines.Default.GeneratedLine));
            return Cli.Ok;
        });
        return cmd;
    }
}

internal sealed record GeneratedLine(int Index, string Text, int[] Ids);
