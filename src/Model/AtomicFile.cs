namespace VkPrompt.Model;

/// <summary>A file written under a temporary name in the target's directory and renamed over the
/// target only by <see cref="Commit"/>, so a crash or an exception mid-write leaves the previous
/// file (or none) rather than a truncated one. The temporary file is in the same directory because
/// a rename is only atomic within one file system.</summary>
internal sealed class AtomicFile : IDisposable
{
    readonly string path;
    readonly string tempPath;
    bool committed;

    public FileStream Stream { get; }

    AtomicFile(string path)
    {
        this.path = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(this.path)!;
        tempPath = Path.Combine(dir, $".{Path.GetFileName(this.path)}.{Guid.NewGuid():N}.tmp");
        Stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
    }

    public static AtomicFile Create(string path) => new(path);

    public static void WriteAllText(string path, string text)
    {
        using var f = Create(path);
        using (var w = new StreamWriter(f.Stream, leaveOpen: true)) w.Write(text);
        f.Commit();
    }

    public void Commit()
    {
        // Flushed to the disk before the rename: otherwise a power loss can leave the new name
        // pointing at a file whose data never reached the disk.
        Stream.Flush(flushToDisk: true);
        Stream.Dispose();
        File.Move(tempPath, path, overwrite: true);
        committed = true;
    }

    public void Dispose()
    {
        if (committed) return;
        Stream.Dispose();
        File.Delete(tempPath);
    }
}
