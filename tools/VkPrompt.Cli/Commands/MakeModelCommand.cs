using System.CommandLine;
using VkPrompt.Model;

namespace VkPrompt.Cli.Commands;

internal static class MakeModelCommand
{
    public static Command Create()
    {
        var shape = new Option<string>("--shape") { Description = BenchCommand.ShapeNamesHelp + ".", Required = true };
        var output = new Option<string>("--output", "-o") { HelpName = "DIR", Description = "Directory to write config.json, model.safetensors (and spiece.model with --tokenizer; byt5-small writes a tokenizer_config.json naming ByT5Tokenizer instead, so text commands work on bytes).", Required = true };
        var seed = new Option<int>("--seed") { Description = "Default: 0.", DefaultValueFactory = _ => 0 };
        var tokenizer = new Option<string?>("--tokenizer") { HelpName = "FILE", Description = "A spiece.model to copy into the directory so text commands work (not for byt5-small, which uses bytes)." };
        var cmd = new Command("make-model", "Write a T5 checkpoint with random weights in Hugging Face layout, for benchmarks and tests (no download needed). The weights are random: its outputs are meaningless.")
        {
            shape, output, seed, tokenizer,
        };
        cmd.SetAction(parse =>
        {
            T5Config cfg;
            try { cfg = T5Config.Named(parse.GetValue(shape)!); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            var dir = parse.GetValue(output)!;
            // Random weights written over a real checkpoint would destroy it without a trace.
            if (new[] { "config.json", "model.safetensors", "model.safetensors.index.json" }.FirstOrDefault(f => File.Exists(Path.Combine(dir, f))) is { } held)
                throw new UsageException($"{dir} already holds a checkpoint ({held}); make-model writes random weights and would replace it: choose another --output");
            if (cfg.TokenizerClass == T5Config.ByteTokenizerClass && parse.GetValue(tokenizer) is not null)
                throw new UsageException($"--shape {parse.GetValue(shape)} tokenizes bytes (ByT5Tokenizer); --tokenizer does not apply");
            RandomT5.Write(dir, cfg, parse.GetValue(seed), parse.GetValue(tokenizer));
            Cli.Out(parse).WriteLine($"wrote a random {parse.GetValue(shape)} checkpoint to {dir}");
            return Cli.Ok;
        });
        return cmd;
    }
}
