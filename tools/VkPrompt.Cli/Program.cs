using System.CommandLine;
using VkPrompt.Cli.Commands;

namespace VkPrompt.Cli;

internal static class Program
{
    static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>The whole CLI as a function of its arguments and output streams, so tests run it
    /// in-process and read the exit code instead of spawning processes.</summary>
    internal static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr) => Cli.Invoke(Root(), args, stdout, stderr);

    /// <summary>The command tree, also walked by the tests that check every command's help.</summary>
    internal static Command Root() =>
        Cli.Root(
            "VkPrompt: prompt tuning (Lester et al. 2021) of a frozen T5 on any Vulkan GPU or on lavapipe.",
            DemoCommand.Create(),
            TrainCommand.Create(),
            EvalCommand.Create(),
            ScoreCommand.Create(),
            ClassifyCommand.Create(),
            GenerateCommand.Create(),
            GradCommand.Create(),
            TokenizeCommand.Create(),
            DevicesCommand.Create(),
            PlanCommand.Create(),
            BenchCommand.Create(),
            MakeModelCommand.Create());
}
