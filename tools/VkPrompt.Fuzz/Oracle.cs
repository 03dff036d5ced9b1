using System.Diagnostics;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Fuzz;

/// <summary>What one input did to its parser.</summary>
internal enum Verdict
{
    /// <summary>Read without complaint.</summary>
    Parsed,
    /// <summary>Refused with the one-line user error the CLI prints with exit 2, naming the file.</summary>
    UserError,
    /// <summary>Anything else: a crash the CLI reports as an internal error, a user error that
    /// names no file, a hang, or an absurd allocation.</summary>
    Bug,
}

/// <param name="Signature">For a bug, what tells it apart from others: the exception type and
/// the innermost VkPrompt method it came from; two inputs of one signature are one finding.</param>
internal sealed record Outcome(Verdict Verdict, string Signature = "", string Detail = "");

/// <summary>
/// Decides whether a parser handled an input acceptably. Issue 21's promise (docs/reliability.md,
/// "Bad input is a one-line error"): bad input ends in an exception the CLI maps to its one-line
/// error with exit 2 (<c>Cli.IsUserError</c>, the same test the CLI applies), and that line names
/// the file (BadInputTests asserts the file's name in the line). Everything else is a bug: an
/// exception the CLI would print as "internal error" (IndexOutOfRange, NullReference, Overflow,
/// InvalidCast, an ArgumentException from the BCL, OutOfMemory), more than
/// <see cref="AllocationCap"/> allocated for one small input, or no answer within the timeout.
/// </summary>
internal static class Oracle
{
    /// <summary>No input here is above a megabyte; a parser that allocates 256 MiB for one is
    /// trusting a length or count from the file (issue 21 finding 9 was 3-4 GB for a line).</summary>
    public const long AllocationCap = 256L << 20;

    /// <summary>Runs <paramref name="target"/> on <paramref name="input"/>, written into
    /// <paramref name="dir"/> (prepared by <see cref="Prepare"/>).</summary>
    public static Outcome Run(Target target, Fixtures fx, string dir, byte[] input, TimeSpan timeout)
    {
        string path = Path.Combine(dir, target.FileName);
        File.WriteAllBytes(path, input);
        Exception? error = null;
        long allocated = 0;
        // Its own thread so that a hang can be timed out, with a large stack so that only deep
        // recursion, not a deep-but-bounded one, overflows it; allocation is counted on it alone.
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { target.Parse(fx, path); }
            catch (Exception e) { error = e; }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }, 64 << 20) { IsBackground = true };
        thread.Start();
        if (!thread.Join(timeout)) return new Outcome(Verdict.Bug, "hang", $"no answer after {timeout.TotalSeconds:0} s");
        if (allocated > AllocationCap)
            return new Outcome(Verdict.Bug, $"alloc-{(error is null ? "parsed" : error.GetType().Name)}", $"allocated {allocated >> 20} MiB for a {input.Length}-byte input");
        if (error is null) return new Outcome(Verdict.Parsed);
        return Classify(error, dir);
    }

    /// <summary>A user error that names a file in <paramref name="dir"/>, or a bug.</summary>
    public static Outcome Classify(Exception error, string dir)
    {
        while (error is BugInside inner) error = inner.InnerException!;
        if (CliConventions.IsUserError(error))
        {
            string line = CliConventions.Describe(error);
            if (line.Contains(dir, StringComparison.Ordinal)) return new Outcome(Verdict.UserError, Detail: line);
            return new Outcome(Verdict.Bug, $"unnamed-{Signature(error)}", $"a user error that names no file: {line}");
        }
        return new Outcome(Verdict.Bug, Signature(error), error.ToString());
    }

    /// <summary>Runs one of several readings of the same input (a target that reads its input more
    /// than one way): a user error ends only that reading, a bug ends the input's run.</summary>
    public static void AllowUserError(string path, Action read)
    {
        try { read(); }
        catch (Exception e)
        {
            if (Classify(e, Path.GetDirectoryName(path)!).Verdict == Verdict.Bug) throw new BugInside(e);
        }
    }

    /// <summary>Carries a bug out of <see cref="AllowUserError"/> unchanged, so that an outer
    /// reading cannot take it for a user error.</summary>
    sealed class BugInside(Exception inner) : Exception(inner.Message, inner);

    static string Signature(Exception e)
    {
        var frame = new StackTrace(e).GetFrames().Select(f => f.GetMethod())
            .FirstOrDefault(m => m?.DeclaringType?.FullName is { } n && n.StartsWith("VkPrompt.", StringComparison.Ordinal) && !n.StartsWith("VkPrompt.Fuzz", StringComparison.Ordinal));
        string where = frame is null ? "bcl" : $"{Outer(frame.DeclaringType!).Name}.{Clean(frame.Name)}";
        return $"{e.GetType().Name}-{where}";
    }

    /// <summary>A lambda's or iterator's compiler-made class as the type it was written in.</summary>
    static Type Outer(Type t) => t.Name.Contains('<') && t.DeclaringType is { } d ? Outer(d) : t;

    /// <summary>A lambda's compiler-made name (&lt;Open&gt;b__3_0) as the method it was written in.</summary>
    static string Clean(string method) => method.StartsWith('<') && method.IndexOf('>') is > 1 and var end ? method[1..end] : new(method.Where(char.IsLetterOrDigit).ToArray());
}
