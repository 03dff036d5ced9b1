using VkPrompt.Cli;
using VkPrompt.Model;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>Issue 21, finding 8: a write that fails leaves neither a half file nor its temporary
/// file (a full disk once left training.png.tmp.png), and the names of temporaries are told apart
/// from a user's files.</summary>
public sealed class AtomicFileTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    string[] Entries() => Directory.EnumerateFileSystemEntries(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Fact]
    public void AWriteThatFailsMidwayLeavesThePreviousFileAndNoTemporary()
    {
        var path = dir.File("a.json");
        File.WriteAllText(path, "old");
        void WriteHalf()
        {
            using var f = AtomicFile.Create(path);
            f.Stream.Write("new, but not all of it"u8);
            Assert.Single(Entries(), n => AtomicFile.IsTemporaryOf(n, "a.json"));
            throw new InvalidOperationException("the disk is full");
        }
        Assert.Throws<InvalidOperationException>(WriteHalf);
        Assert.Equal(["a.json"], Entries());
        Assert.Equal("old", File.ReadAllText(path));

        AtomicFile.WriteAllText(path, "new");
        Assert.Equal("new", File.ReadAllText(path));
        Assert.Equal(["a.json"], Entries());
    }

    [Fact]
    public void ACommitThatCannotRenameDeletesItsTemporary()
    {
        // The target is a directory: the rename over it fails after all the data was written.
        var target = dir.File("training.png");
        Directory.CreateDirectory(target);
        Assert.ThrowsAny<IOException>(() => MetricsChart.Write(target, [new VkPrompt.Training.StepReport(1, 2.0, 10, 1.0)]));
        Assert.Equal(["training.png"], Entries());
        Assert.Empty(Directory.EnumerateFileSystemEntries(target));
    }

    [Fact]
    public void TemporaryNamesAreTheirTargetsAndNoOneElses()
    {
        var guid = Guid.NewGuid().ToString("N");
        Assert.True(AtomicFile.IsTemporaryOf($".checkpoint.safetensors.{guid}.tmp", "checkpoint.safetensors"));
        Assert.False(AtomicFile.IsTemporaryOf($".checkpoint.safetensors.{guid}.tmp", "checkpoint"));
        Assert.False(AtomicFile.IsTemporaryOf($".checkpoint.safetensors.notaguid{guid[8..]}.tmp", "checkpoint.safetensors"));
        Assert.False(AtomicFile.IsTemporaryOf("checkpoint.safetensors.tmp", "checkpoint.safetensors"));
        Assert.False(AtomicFile.IsTemporaryOf($".checkpoint.safetensors.{guid}.tmp.bak", "checkpoint.safetensors"));
    }

    /// <summary>The directory sync opens the directory itself (POSIX: open and fsync it), so a
    /// directory that is not there is an error rather than a silent no-op.</summary>
    [Fact]
    public void SyncingADirectoryOpensIt()
    {
        AtomicFile.SyncDirectory(dir.Path);
        if (!OperatingSystem.IsWindows())
            Assert.Throws<IOException>(() => AtomicFile.SyncDirectory(dir.File("missing")));
    }
}
