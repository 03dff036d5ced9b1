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
            string name = parse.GetValue(shape)!;
            if (!T5Config.ShapeNames.Contains(name))
                throw new UsageException($"--shape '{name}' is not a shape make-model knows: {string.Join(", ", T5Config.ShapeNames)}");
            var cfg = T5Config.Named(name);
            var dir = parse.GetValue(output)!;
            if (File.Exists(dir)) throw new UsageException($"--output {dir} is a file; it names the directory the checkpoint goes to");
            // Random weights written over a real checkpoint would destroy it without a trace, and
            // its tokenizer files are as much the user's.
            string[] files = ["config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer_config.json", "spiece.model"];
            if (files.FirstOrDefault(f => File.Exists(Path.Combine(dir, f))) is { } held)
                throw new UsageException($"{dir} already holds a checkpoint ({held}); make-model writes random weights and would replace it: choose another --output");
            if (cfg.TokenizerClass == T5Config.ByteTokenizerClass && parse.GetValue(tokenizer) is not null)
                throw new UsageException($"--shape {name} tokenizes bytes (ByT5Tokenizer); --tokenizer does not apply");
            bool created = !Directory.Exists(dir);
            try { Directory.CreateDirectory(dir); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--output {dir}: cannot make the directory: {e.Message}");
            }
            try { RandomT5.Write(dir, cfg, parse.GetValue(seed), parse.GetValue(tokenizer)); }
            catch
            {
                // Nothing half-written: none of these files was there before (checked above), so
                // those there now are this run's, and a directory it made is removed once empty.
                if (Directory.Exists(dir))
                {
                    foreach (var f in files) File.Delete(Path.Combine(dir, f));
                    if (created && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
                }
                throw;
            }
            Cli.Out(parse).WriteLine($"wrote a random {name} checkpoint to {dir}");
            return Cli.Ok;
        });
        return cmd;
    }
}
