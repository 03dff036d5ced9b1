using System.CommandLine;
using Spectre.Console;
using VkPrompt.Training;

namespace VkPrompt.Cli;

/// <summary>
/// <c>--distributed</c>: a command runs in this process alone, or as one rank of an MPI job
/// (<c>mpiexec -n N vkprompt ... --distributed mpi</c>), each rank on its own device. What the
/// ranks share is the library's (<see cref="IProcessGroup"/>); what is the CLI's is here: which
/// device a rank takes, that only rank 0 prints, and that a rank that fails names itself and
/// ends the whole job (MPI_Abort), so no rank waits forever in a collective.
/// </summary>
internal static class Distributed
{
    public const string None = "none";
    public const string Mpi = "mpi";

    public static Option<string> Option()
    {
        var option = new Option<string>("--distributed")
        {
            HelpName = "none|mpi",
            Description = "mpi: this process is one rank of an MPI job started by mpiexec (an MPI of MPICH's ABI: MPICH, Intel MPI, MVAPICH, Cray MPICH, MS-MPI; " +
                          "Debian/Ubuntu: apt-get install mpich), e.g. 'mpiexec -n 2 vkprompt train ... --distributed mpi'. Every rank computes a share of each batch on its own device " +
                          "and the prompt gradients are combined in rank order, so the run gives the one-process result. With --device auto (the default) a rank takes its " +
                          "local index on its machine (MPI_LOCALRANKID, MV2_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID, else its rank) among the devices auto prefers, modulo their " +
                          "count (on a machine with one device, as lavapipe, every rank shares it); another --device, or --devices, is taken by every rank as given. " +
                          "Only rank 0 prints progress and writes outputs; every rank reads the inputs (and a checkpoint to resume), so they must be on a filesystem the ranks share. " +
                          "A rank that fails prints 'rank N: error: ...' and ends every rank (MPI_Abort). Default: none.",
            DefaultValueFactory = _ => None,
        };
        option.AcceptOnlyFromAmong(None, Mpi);
        return option;
    }

    /// <summary>Runs <paramref name="command"/> in the process group <paramref name="option"/>
    /// names. Under MPI a failure prints "rank N: error: ..." and aborts the job with the exit
    /// code it would have had; a run that ends (stopped by a signal included) finalises MPI.</summary>
    public static int Run(ParseResult parse, Option<string> option, Func<IProcessGroup, int> command)
    {
        if (parse.GetValue(option) != Mpi)
        {
            using var single = new SingleProcess();
            return command(single);
        }
        var group = MpiProcessGroup.Open();
        // Which process is which rank, once, from every rank: mpiexec names a rank that died by
        // its process id alone ("BAD TERMINATION ... PID 787").
        parse.InvocationConfiguration.Error.WriteLine($"vkprompt: rank {group.Rank} of {group.Size} is process {Environment.ProcessId} on {Environment.MachineName}");
        int code;
        try { code = command(group); }
        catch (Exception e)
        {
            code = Cli.Report(e, parse, parse.InvocationConfiguration.Error, $"rank {group.Rank}: ");
            parse.InvocationConfiguration.Error.Flush();
            // The abort tears the job down at once, and mpiexec may drop what it has not yet
            // forwarded of this rank's output: the error line went missing in a loaded test run.
            // A second for mpiexec to forward it costs nothing to a job that is ending anyway.
            Thread.Sleep(TimeSpan.FromSeconds(1));
            group.Abort(code);
            return code;
        }
        group.Dispose();
        return code;
    }

    /// <summary>The devices this process computes on: <paramref name="devices"/> (--device, or
    /// --devices' list), except that a lone auto in a group of several is the process's local
    /// index among the devices auto prefers.</summary>
    public static IReadOnlyList<string> Devices(IReadOnlyList<string> devices, IProcessGroup group) =>
        group.Size > 1 && devices is [var one] && one.Equals("auto", StringComparison.OrdinalIgnoreCase)
            ? [$"auto:{EnvironmentSettings.MpiLocalRank() ?? group.Rank}"]
            : devices;

    /// <summary>Where a command prints: its console on rank 0, nowhere on the others (their
    /// errors still reach standard error, naming the rank).</summary>
    public static IAnsiConsole Console(ParseResult parse, IProcessGroup group) =>
        group.Rank == 0 ? Cli.Console(parse) : AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) });

    /// <summary>The verbose log of <paramref name="parse"/>, each line naming the rank in a group of several.</summary>
    public static Action<string>? Log(ParseResult parse, IProcessGroup group) =>
        ModelOptions.Log(parse) is { } log && group.Size > 1 ? m => log($"rank {group.Rank}: {m}") : ModelOptions.Log(parse);
}
