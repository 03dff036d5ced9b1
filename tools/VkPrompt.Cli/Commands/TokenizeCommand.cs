using System.CommandLine;
using VkPrompt.Model;
using VkPrompt.Model.Tokenization;

namespace VkPrompt.Cli.Commands;

internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var text = new Option<string?>("--text", "-t") { Description = "Text to tokenize." };
        var data = ModelOptions.Data(required: false);
        data.Description = "JSONL data: prints the input ids of each line (and target ids when present).";
        var cmd = new Command("tokenize", "Print token ids as JSON, exactly as the model's tokenizer gives them (SentencePiece, or ByT5's UTF-8 bytes + 3) (with the final </s> = 1).")
        {
            model, text, data,
        };
        cmd.SetAction(parse =>
        {
            string? t = parse.GetValue(text), d = parse.GetValue(data);
            if ((t is null) == (d is null)) throw new UsageException("give exactly one of --text or --data");
            var tok = T5Tokenizer.Load(parse.GetValue(model)!);
            var output = Cli.Out(parse);
            if (t is not null)
            {
                output.WriteLine($"[{string.Join(", ", tok.Encode(t))}]");
                return Cli.Ok;
            }
            foreach (var e in DataFile.Read(d!, requireTargets: false))
                output.WriteLine(e.Target is null
                    ? $"{{\"input_ids\": [{string.Join(", ", tok.Encode(e.Input))}]}}"
                    : $"{{\"input_ids\": [{string.Join(", ", tok.Encode(e.Input))}], \"target_ids\": [{string.Join(", ", tok.Encode(e.Target))}]}}");
            return Cli.Ok;
        });
        return cmd;
    }
}
