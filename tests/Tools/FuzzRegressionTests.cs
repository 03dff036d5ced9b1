using VkPrompt.Fuzz;
using VkPrompt.Model;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Tools;

/// <summary>
/// Every input the fuzzer (tools/fuzz.sh) ever found failing is kept in tests/FuzzCorpus/TARGET/
/// and replayed here through that target's parser and oracle: each must now parse or be refused
/// with the one-line user error naming its file, within the timeout and the allocation cap.
/// </summary>
public sealed class FuzzRegressionTests : IDisposable
{
    static readonly string Corpus = Path.Combine(TestPaths.RepoRoot, "tests", "FuzzCorpus");

    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    public static TheoryData<string, string> KeptInputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var folder in Directory.GetDirectories(Corpus).Order(StringComparer.Ordinal))
            foreach (var file in Directory.GetFiles(folder).Order(StringComparer.Ordinal))
                data.Add(Path.GetFileName(folder), Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(KeptInputs))]
    public void AKeptInputIsNoLongerABug(string target, string file)
    {
        var t = Target.Find(target);
        Assert.NotNull(t);
        var fx = new Fixtures(TestPaths.RepoRoot, TestPaths.Golden);
        var scratch = dir.File(target);
        Directory.CreateDirectory(scratch);
        t.Prepare?.Invoke(fx, scratch);
        var outcome = Oracle.Run(t, fx, scratch, File.ReadAllBytes(Path.Combine(Corpus, target, file)), TimeSpan.FromSeconds(60));
        Assert.True(outcome.Verdict != Verdict.Bug, $"{target}/{file}: {outcome.Signature}\n{outcome.Detail}");
    }

    /// <summary>A folder that names no target (a target renamed) would have its inputs skipped.</summary>
    [Fact]
    public void EveryCorpusFolderIsATarget()
    {
        foreach (var folder in Directory.GetDirectories(Corpus))
            Assert.True(Target.Find(Path.GetFileName(folder)) is not null, $"{folder} names no fuzz target (tools/fuzz.sh list)");
    }

    static Target Throwing(Action<string> parse) => new("probe", "input.bin", Format.Binary, "probe", _ => [], (_, path) => parse(path));

    /// <summary>The oracle itself: what the CLI calls a user error passes only where it names the
    /// file; BCL exceptions, hangs and huge allocations are bugs.</summary>
    [Fact]
    public void TheOracleTellsUserErrorsFromBugs()
    {
        var fx = new Fixtures(TestPaths.RepoRoot, TestPaths.Golden);
        Outcome Run(Action<string> parse, double seconds = 30) => Oracle.Run(Throwing(parse), fx, dir.Path, [1, 2, 3], TimeSpan.FromSeconds(seconds));

        Assert.Equal(Verdict.Parsed, Run(path => Assert.Equal(3, File.ReadAllBytes(path).Length)).Verdict);
        Assert.Equal(Verdict.UserError, Run(path => throw new ModelFormatException(path, "bad")).Verdict);

        var unnamed = Run(_ => throw new ModelFormatException("/elsewhere/config.json", "bad"));
        Assert.Equal((Verdict.Bug, "unnamed-ModelFormatException-FuzzRegressionTests.TheOracleTellsUserErrorsFromBugs"), (unnamed.Verdict, unnamed.Signature));

        var crash = Run(_ => throw new IndexOutOfRangeException());
        Assert.Equal((Verdict.Bug, "IndexOutOfRangeException-FuzzRegressionTests.TheOracleTellsUserErrorsFromBugs"), (crash.Verdict, crash.Signature));

        var nested = Run(path => Oracle.AllowUserError(path, () => throw new OverflowException()));
        Assert.Equal(Verdict.Bug, nested.Verdict);
        Assert.StartsWith("OverflowException-", nested.Signature, StringComparison.Ordinal);
        Assert.Equal(Verdict.Parsed, Run(path => Oracle.AllowUserError(path, () => throw new ModelFormatException(path, "bad"))).Verdict);

        Assert.Equal("hang", Run(_ => Thread.Sleep(2000), seconds: 0.2).Signature);
        Assert.Equal("alloc-parsed", Run(_ => GC.KeepAlive(new byte[Oracle.AllocationCap + 1])).Signature);
    }
}
