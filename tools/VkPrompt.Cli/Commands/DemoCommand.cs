using System.CommandLine;

namespace VkPrompt.Cli.Commands;

internal static class DemoCommand
{
    public static Command Create()
    {
        var command = new Command("demo",
            "Train a soft prompt on the bundled tiny T5 model and show the loss falling. " +
            "Not yet implemented: the model and the training loop it runs are still being built.");
        command.SetAction(int (_) => throw new UsageException("'vkprompt demo' is not yet implemented: the T5 model and training loop it runs are still being built"));
        return command;
    }
}
