using VkPrompt.Model;
using VkPrompt.Training;

namespace VkPrompt.Cli;

/// <summary>--prompt as data.</summary>
internal static class PromptArg
{
    public const string TasksHelp =
        "A soft prompt: a PEFT adapter directory, a .safetensors file with key prompt_embeddings, or a T5X .npy [P, d_model]. " +
        "Repeat it to serve several tasks in one batch over the frozen model: each data line then names its prompt in a \"prompt\" field, " +
        "the name given as --prompt NAME=PATH or else the file or directory name without extension. Prompts may differ in length; " +
        "each line computes what its prompt alone gives. Default: no prompt.";

    /// <summary>The prompts of a multi-task file, and which one each example takes: with one
    /// --prompt every example takes it (a line may name it); with several, each line names its
    /// own. Lines that name a prompt not given are errors, not silently unprompted.</summary>
    public static (PromptSet? Prompts, int[]? Index) ForExamples(IReadOnlyList<string> args, IReadOnlyList<Example> examples, string dataPath, PromptModel model)
    {
        var named = args.Select(Parse).ToList();
        if (named.GroupBy(n => n.Name).FirstOrDefault(g => g.Count() > 1) is { } dup)
            throw new UsageException($"two --prompt are named '{dup.Key}'; name them apart with --prompt NAME=PATH");
        var names = named.Select(n => n.Name).ToList();
        string known = names.Count == 0 ? "no --prompt was given" : $"the --prompt names are {string.Join(", ", names)}";
        var index = new int[examples.Count];
        for (int i = 0; i < examples.Count; i++)
        {
            string? want = examples[i].Prompt;
            if (want is null)
            {
                if (names.Count > 1)
                    throw new ModelFormatException(dataPath, $"example {i + 1} has no \"prompt\" field; with several --prompt each line names the one it is for ({known})");
                continue;
            }
            index[i] = names.IndexOf(want);
            if (index[i] < 0) throw new ModelFormatException(dataPath, $"example {i + 1} is for prompt '{want}', but {known}");
        }
        if (named.Count == 0) return (null, null);
        var prompts = model.Prompts(named.Select(n => model.LoadPrompt(n.Path)).ToList());
        return (prompts, named.Count > 1 ? index : null);
    }

    /// <summary>NAME=PATH, or PATH named after its file: a path that exists is taken whole even
    /// with an '=' in it.</summary>
    static (string Name, string Path) Parse(string arg)
    {
        int eq = arg.IndexOf('=');
        if (eq > 0 && !File.Exists(arg) && !Directory.Exists(arg))
        {
            if (eq == arg.Length - 1) throw new UsageException($"--prompt {arg} names no file: expected NAME=PATH");
            return (arg[..eq], arg[(eq + 1)..]);
        }
        return (System.IO.Path.GetFileNameWithoutExtension(System.IO.Path.TrimEndingDirectorySeparator(arg)), arg);
    }
}
