using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Cli;

/// <summary>
/// What every vkprompt command shares: the global options, where output goes, and how failures
/// become exit codes. 0 is success; 2 is a problem the user can fix (bad arguments, a missing
/// or malformed file, no usable Vulkan device), reported as one line; 1 is a bug in vkprompt.
/// </summary>
internal static class Cli
{
    public const int Ok = 0;
    public const int InternalError = 1;
    public const int UserError = 2;
    /// <summary>Stopped by Ctrl-C (SIGINT) after saving what it had: 128 + 2, what a shell reports
    /// for a process the signal ended, so a script does not take the run for finished.</summary>
    public const int Interrupted = 130;
    /// <summary>Stopped by SIGTERM (kill, docker stop, a batch scheduler) after saving what it had: 128 + 15.</summary>
    public const int Terminated = 143;

    const string VerboseName = "--verbose";

    /// <summary>The root command with the global options, holding <paramref name="commands"/>.</summary>
    public static Command Root(string description, params Command[] commands)
    {
        // A plain Command, not RootCommand: RootCommand takes its name and its version from the
        // process's entry assembly, which is not vkprompt when a test runs the CLI in-process.
        var root = new Command("vkprompt", description)
        {
            new HelpOption(),
            new VersionOption { Action = new PrintVersion() },
            new Option<bool>(VerboseName, "-v")
            {
                Description = "When something fails, also print the full exception with its stack trace. Off by default.",
                Recursive = true,
            },
        };
        foreach (var command in commands) root.Subcommands.Add(command);
        // Without a command there is nothing to run; the overview of commands is the useful answer.
        root.SetAction(parse => new HelpAction().Invoke(parse));
        return root;
    }

    public static bool Verbose(ParseResult parse) => parse.GetValue<bool>(VerboseName);

    /// <summary>"vkprompt VERSION", as reports name the tool that wrote them.</summary>
    public static string Version => $"vkprompt {InformationalVersion}";

    static readonly string InformationalVersion = typeof(Cli).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;

    /// <summary>Adds <paramref name="options"/> to <paramref name="command"/> in order (the order
    /// --help lists them), where a command's list splices in a shared group (<see cref="SessionArgs.Options"/>).</summary>
    public static void AddOptions(Command command, IEnumerable<Option> options)
    {
        foreach (var o in options) command.Options.Add(o);
    }

    /// <summary>The --device option of every command that computes. Each command gets its own
    /// instance because an option belongs to exactly one parent command.</summary>
    public static Option<string> DeviceOption() => new("--device")
    {
        HelpName = "SPEC",
        Description = "Where to compute: 'auto' (the best Vulkan device: discrete > integrated > virtual > CPU), " +
                      "a device index or a name substring as listed by 'vkprompt devices', or 'cpu' for the CPU reference backend without Vulkan. " +
                      "Default: $VKPROMPT_DEVICE if set, else auto.",
        DefaultValueFactory = _ => EnvironmentSettings.GpuOptions().Device,
    };

    /// <summary>The --devices option of the commands that run data parallel (train, grad, eval,
    /// score, bench), beside their --device: one option per command, as <see cref="DeviceOption"/>.</summary>
    public static Option<string?> DevicesOption() => new("--devices")
    {
        HelpName = "SPEC,SPEC,...",
        Description = "Compute data parallel on several devices, each SPEC as --device takes it (the same device may be listed twice: " +
                      "two logical devices on one physical device; 'cpu' may be among them). Each device holds the whole frozen model and takes a share of " +
                      "every batch; the result is the one-device result (docs/numerics.md's tolerance; training at dropout 0, where dropout masks are the same draw). " +
                      "The first device also runs the optimizer and validation. --memory-cap applies to each device. Not with --device.",
    };

    /// <summary>The devices a command's <paramref name="device"/> and <paramref name="devices"/>
    /// name: the list of --devices, else --device (or its default) alone; both given is refused.</summary>
    public static IReadOnlyList<string> ReadDevices(ParseResult parse, Option<string> device, Option<string?> devices)
    {
        if (parse.GetValue(devices) is not { } list) return [parse.GetValue(device)!];
        if (parse.GetResult(device) is { Implicit: false })
            throw new UsageException($"{device.Name} and {devices.Name} name the devices twice: give {devices.Name} alone (e.g. {devices.Name} {parse.GetValue(device)},{parse.GetValue(device)})");
        var specs = list.Split(',', StringSplitOptions.TrimEntries);
        if (specs.Any(d => d.Length == 0))
            throw new UsageException($"{devices.Name} '{list}' has an empty entry: give device specs separated by commas, e.g. {devices.Name} 0,1");
        return specs;
    }

    /// <summary>The --memory-cap option of the commands that open a model on a device
    /// (<see cref="GpuOptions.MemoryCapBytes"/>): bytes, or a number with KiB, MiB, GiB or TiB.</summary>
    public static Option<long?> MemoryCapOption() => new("--memory-cap")
    {
        HelpName = "SIZE",
        Description = "The most device memory vkprompt reserves, weights and activations together, as bytes or e.g. 512MiB or 2GiB; " +
                      "work that would need more (a batch too large) is refused before it starts, naming what it needed. Vulkan devices only. Default: no cap.",
        CustomParser = result => ParseSize(result.Tokens[0].Value) is { } bytes ? bytes
            : Error(result, $"--memory-cap {result.Tokens[0].Value} is not a size: give bytes, or a number with KiB, MiB, GiB or TiB (e.g. 512MiB)"),
    };

    static long? Error(System.CommandLine.Parsing.ArgumentResult result, string message)
    {
        result.AddError(message);
        return null;
    }

    /// <summary>"512MiB", "1.5GiB" or "1048576" as bytes: positive, binary units; null for anything else.</summary>
    internal static long? ParseSize(string text)
    {
        var m = System.Text.RegularExpressions.Regex.Match(text.Trim(), @"^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
        if (!m.Success) return null;
        int shift = m.Groups[2].Value.ToLowerInvariant() switch { "kib" => 10, "mib" => 20, "gib" => 30, "tib" => 40, _ => 0 };
        double bytes = Math.Floor(double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * (1L << shift));
        return bytes is >= 1 and < long.MaxValue ? (long)bytes : null;
    }

    /// <summary>Standard output as configured for this invocation (a test's writer in-process).</summary>
    public static TextWriter Out(ParseResult parse) => parse.InvocationConfiguration.Output;

    /// <summary>Says on stderr what the encoder cut, so no truncation is silent (stdout stays the
    /// command's data).</summary>
    public static void WarnTruncation(ParseResult parse, ExampleEncoder encoder)
    {
        if (encoder.Truncated) parse.InvocationConfiguration.Error.WriteLine($"warning: {encoder.Report()} (--max-input-length, --max-target-length)");
    }

    /// <summary>A Spectre console on this invocation's standard output; it emits colours only
    /// when that output is a terminal.</summary>
    public static IAnsiConsole Console(ParseResult parse)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Out(parse)) });
        // Redirected output (a log, a pipe) has no width; Spectre would wrap paths at 80 columns.
        if (!console.Profile.Capabilities.Interactive) console.Profile.Width = 4096;
        return console;
    }

    /// <summary>Parses and runs <paramref name="args"/>, mapping every outcome to an exit code.</summary>
    public static int Invoke(Command root, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        ParseResult? parse = null;
        try
        {
            parse = root.Parse(args);
            if (parse.Action is ParseErrorAction)
            {
                var messages = string.Join("; ", parse.Errors.Select(e => PlainType(e.Message.TrimEnd('.'))));
                stderr.WriteLine($"error: {OneLine(messages)} (see '{CommandPath(parse)} --help')");
                return UserError;
            }
            if (EmptyPath(parse) is { } empty)
            {
                stderr.WriteLine($"error: {empty.Name} is an empty string; it names {(empty.HelpName == "SPEC" ? "a device" : "a file or directory")}");
                return UserError;
            }
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) { return Report(e, parse, stderr); }
    }

    /// <summary>Prints <paramref name="e"/> as one line (after <paramref name="prefix"/>: an MPI
    /// rank's "rank N: ") and returns its exit code: <see cref="UserError"/> for a problem the
    /// user can fix, else <see cref="InternalError"/>.</summary>
    internal static int Report(Exception e, ParseResult? parse, TextWriter stderr, string prefix = "")
    {
        bool verbose = parse is not null && Verbose(parse);
        if (IsUserError(e))
        {
            stderr.WriteLine($"{prefix}error: {OneLine(Describe(e))}{(e is GpuException { DoesNotFit: true } && parse is not null ? SmallerWork(parse) : "")}");
            if (verbose) stderr.WriteLine(e);
            return UserError;
        }
        stderr.WriteLine($"{prefix}internal error: {e.GetType().Name}: {OneLine(e.Message)}{(verbose ? "" : " (rerun with --verbose for the stack trace)")}");
        if (verbose) stderr.WriteLine(e);
        return InternalError;
    }

    /// <summary>The first path or device option (its help name FILE, DIR, ...PATH or SPEC) given
    /// as "": .NET refuses an empty path with an ArgumentException that names no option, an empty
    /// device would pass for auto, and "" is never what a user meant (a shell variable that was
    /// not set).</summary>
    static Option? EmptyPath(ParseResult parse) =>
        parse.CommandResult.Children.OfType<OptionResult>()
            .FirstOrDefault(o => o.Option.HelpName is "FILE" or "DIR" or "SPEC" || o.Option.HelpName?.EndsWith("PATH", StringComparison.Ordinal) == true
                                 ? o.Tokens.Any(t => t.Value.Length == 0) : false)?.Option;

    sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parse)
        {
            Out(parse).WriteLine(InformationalVersion);
            return Ok;
        }
    }

    /// <summary>The library's settings as the CLI's flags: what a training error asks to change
    /// (<see cref="Training.TrainingException"/>) is named the way the user can change it.</summary>
    static readonly Dictionary<Training.Setting, string> Flags = new()
    {
        [Training.Setting.OutputDirectory] = "--output",
        [Training.Setting.WeightPrecision] = "--precision",
        [Training.Setting.Task] = "--task",
        [Training.Setting.PipelineStages] = "--pipeline",
        [Training.Setting.Resume] = "--resume",
        [Training.Setting.Overwrite] = "--overwrite",
        [Training.Setting.PromptLength] = "--prompt-length",
        [Training.Setting.BatchSize] = "--batch-size",
        [Training.Setting.MaxInputLength] = "--max-input-length",
        [Training.Setting.Seed] = "--seed",
        [Training.Setting.Init] = "--init",
        [Training.Setting.Choices] = "--choices",
        [Training.Setting.LearningRate] = "--lr",
        [Training.Setting.ClippingThreshold] = "--clip",
    };

    internal static string Describe(Exception e) => e switch
    {
        Training.TrainingException t => t.Describe(s => Flags.GetValueOrDefault(s, s.Name)),
        // The library names its cap as a host sets it; the CLI's user set it with --memory-cap.
        DoesNotFitException { Limit: MemoryLimit.Cap } d => d.Message.Replace(d.LimitName, "the memory cap (--memory-cap)", StringComparison.Ordinal),
        _ => e.Message,
    };

    // IOException covers FileNotFoundException and DirectoryNotFoundException.
    internal static bool IsUserError(Exception e) =>
        e is GpuException or ModelFormatException or UsageException or IOException or UnauthorizedAccessException or JsonException or Training.TrainingException or NonFiniteOutputException
        or Training.MpiException;

    /// <summary>What the command offers that needs less device memory, for work that did not fit.</summary>
    static string SmallerWork(ParseResult parse)
    {
        var names = parse.CommandResult.Command.Options.Select(o => o.Name).ToHashSet();
        var ways = new[] { "--batch-size", "--max-input-length", "--prompt-length", "--recompute" }.Where(names.Contains).ToList();
        if (names.Contains("--attention") && AttentionFusions.Parse(parse.GetValue<string>("--attention") ?? "") != AttentionFusion.Fused)
            ways.Add("--attention fused");
        return ways.Count == 0 ? "" : $"; the work is too large for this device: a smaller {string.Join(", ", ways)} needs less memory";
    }

    static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    /// <summary>System.CommandLine's "as expected type 'System.Int32'" (or a nullable's
    /// "'System.Nullable`1[System.Int32]'") in the words of the help: the user never wrote a type.</summary>
    static string PlainType(string message) =>
        Regex.Replace(message, @"as expected type '([^']*)'", m => JsonMessages.Words(m.Groups[1].Value) is { } words ? $"as {words}" : m.Value);

    static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (SymbolResult? r = parse.CommandResult; r is CommandResult c; r = c.Parent)
            names.Insert(0, c.Command.Name);
        return string.Join(' ', names);
    }
}
