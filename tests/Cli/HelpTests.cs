using VkPrompt.Cli;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>Help for vkprompt and every command, checked against the command tree itself so an
/// option added later is covered without touching this file.</summary>
public sealed class HelpTests
{
    public static TheoryData<string> Commands() => new(Program.Root().Subcommands.Select(c => c.Name));

    [Fact]
    public void RootHelpListsEveryCommand()
    {
        var r = CliRun.Of("--help").Succeeded();
        foreach (var command in Program.Root().Subcommands)
            Assert.Contains($"  {command.Name} ", r.Out, StringComparison.Ordinal);
    }

    [Theory, MemberData(nameof(Commands))]
    public void CommandHelpMentionsEveryOption(string name)
    {
        var r = CliRun.Of(name, "--help").Succeeded();
        Assert.Contains($"vkprompt {name}", r.Out, StringComparison.Ordinal);
        var root = Program.Root();
        var command = root.Subcommands.Single(c => c.Name == name);
        Assert.NotEmpty(command.Options);
        // The root's recursive options (--verbose, --help) are the command's too.
        var inherited = root.Options.Where(o => o.Recursive).ToList();
        Assert.Contains(inherited, o => o.Name == "--verbose");
        foreach (var option in command.Options.Concat(inherited))
            // Every dash spelling; help leaves out --help's DOS-style aliases /h and /?.
            // Each as a word of its own: "-o" is also inside "--output".
            foreach (var spelling in option.Aliases.Prepend(option.Name).Where(a => a.StartsWith('-')))
                Assert.Matches($@"(^|[\s,]){System.Text.RegularExpressions.Regex.Escape(spelling)}([\s,=<]|$)", r.Out);
    }

    /// <summary>Every command that opens a model takes the same options for where and how
    /// (SessionArgs), the ones that can spread over devices also --devices and --pipeline: one
    /// place adds them, so a command cannot miss one (--activations reached some commands late).</summary>
    [Theory]
    [InlineData("train", true)]
    [InlineData("grad", true)]
    [InlineData("eval", true)]
    [InlineData("classify", true)]
    [InlineData("score", true)]
    [InlineData("generate", false)]
    public void ModelCommandsTakeTheSessionOptions(string name, bool spread)
    {
        var options = Program.Root().Subcommands.Single(c => c.Name == name).Options.Select(o => o.Name).ToList();
        string[] session = ["--device", "--memory-cap", "--precision", "--attention", "--activations"];
        string[] spreading = ["--devices", "--pipeline", "--micro-batches"];
        foreach (var o in session) Assert.Contains(o, options);
        foreach (var o in spreading) Assert.Equal(spread, options.Contains(o));
    }
}
