using System.Runtime.InteropServices;

namespace VkPrompt.Model;

/// <summary>A file written under a temporary name in the target's directory and renamed over the
/// target only by <see cref="Commit"/>, so a crash or an exception mid-write leaves the previous
/// file (or none) rather than a truncated one. The temporary file is in the same directory because
/// a rename is only atomic within one file system; a write that fails deletes it, and one a crash
/// left behind is named by <see cref="IsTemporaryOf"/> so the next run can remove it.</summary>
internal sealed partial class AtomicFile : IDisposable
{
    readonly string path;
    readonly string tempPath;
    readonly FileStream file;
    bool committed;

    /// <summary>Where the caller writes the file's bytes. Its failures (a full disk, a file-size
    /// limit), whether in a write or in <see cref="Commit"/>'s flush, are
    /// <see cref="IOException"/>s said of the file asked for.</summary>
    public Stream Stream { get; }

    AtomicFile(string path)
    {
        this.path = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(this.path)!;
        tempPath = Path.Combine(dir, $".{Path.GetFileName(this.path)}.{Guid.NewGuid():N}{TempSuffix}");
        try { file = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20); }
        catch (UnauthorizedAccessException e) { throw new UnauthorizedAccessException(Named(e), e); }
        catch (IOException e) { throw new IOException(Named(e), e); }
        Stream = new Target(this);
    }

    /// <summary>A failure to write the temporary file (a full disk: IOException; a file-size
    /// limit: EFBIG, which .NET reports as an ArgumentOutOfRangeException) as an IOException
    /// about the file asked for.</summary>
    IOException Failure(Exception e) => new(Named(e), e);

    /// <summary>The temporary file, write-only, its failures said by <see cref="Failure"/>. A
    /// write larger than the file's buffer goes to the file system at once, so failures come
    /// from writes as well as from the flush.</summary>
    sealed class Target(AtomicFile owner) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => owner.file.Length;
        public override long Position { get => owner.file.Position; set => throw new NotSupportedException(); }
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            try { owner.file.Write(buffer); }
            catch (Exception e) when (e is IOException or ArgumentOutOfRangeException) { throw owner.Failure(e); }
        }

        public override void Flush()
        {
            try { owner.file.Flush(); }
            catch (Exception e) when (e is IOException or ArgumentOutOfRangeException) { throw owner.Failure(e); }
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>The failure's message said of the file the caller named rather than of the
    /// temporary one, which the caller never asked for and which no longer exists.</summary>
    string Named(Exception e)
    {
        // EFBIG, which .NET words as an argument out of range ("Specified file length was too large").
        if (e is ArgumentOutOfRangeException) return $"{path}: larger than the file system or the process's file-size limit allows";
        var message = e.Message.Replace(tempPath, path, StringComparison.Ordinal);
        return message.Contains(path, StringComparison.Ordinal) ? message : $"{path}: {message}";
    }

    const string TempSuffix = ".tmp";

    public static AtomicFile Create(string path) => new(path);

    public static void WriteAllText(string path, string text)
    {
        using var f = Create(path);
        using (var w = new StreamWriter(f.Stream, leaveOpen: true)) w.Write(text);
        f.Commit();
    }

    /// <summary>Whether <paramref name="fileName"/> is the temporary name a write of
    /// <paramref name="target"/> (a file name in the same directory) uses.</summary>
    public static bool IsTemporaryOf(string fileName, string target) =>
        fileName.StartsWith($".{target}.", StringComparison.Ordinal) && fileName.EndsWith(TempSuffix, StringComparison.Ordinal) &&
        fileName.Length == target.Length + 2 + 32 + TempSuffix.Length &&
        Guid.TryParseExact(fileName.AsSpan(target.Length + 2, 32), "N", out _);

    public void Commit()
    {
        // Flushed to the disk before the rename: otherwise a power loss can leave the new name
        // pointing at a file whose data never reached the disk.
        try { file.Flush(flushToDisk: true); }
        catch (Exception e) when (e is IOException or ArgumentOutOfRangeException) { throw Failure(e); }
        file.Dispose();
        File.Move(tempPath, path, overwrite: true);
        committed = true;
        SyncDirectory(Path.GetDirectoryName(path)!);
    }

    public void Dispose()
    {
        if (committed) return;
        // After a failed write the stream still holds the data it could not write, and disposing
        // it tries again and throws: that second failure would hide the first (the one the caller
        // is unwinding from) and skip the delete, leaving the temporary file behind. The data is
        // being discarded, so its failure is ignored and the file deleted in any case.
        try { file.Dispose(); }
        catch (Exception e) when (e is IOException or ArgumentOutOfRangeException) { }
        finally { File.Delete(tempPath); }
    }

    /// <summary>Flushes a directory's entries (a rename, a new or deleted file) to the disk, so a
    /// power loss after a commit cannot bring back the old name. POSIX only does this for an fsync
    /// of the directory itself (Linux, macOS, the BSDs: open it read-only and fsync the descriptor).
    /// Windows has no such call: NTFS journals its metadata, and a directory cannot be opened as a
    /// file there, so it is left to the file system.</summary>
    public static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows()) return;
        int fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"{directory}: cannot open the directory to flush it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            // EINVAL: a file system that cannot sync a directory (some network and FUSE ones); the
            // rename stands, it is only not forced out.
            if (Fsync(fd) != 0 && Marshal.GetLastPInvokeError() is int errno && errno != EINVAL)
                throw new IOException($"{directory}: flushing the directory failed (errno {errno})");
        }
        finally { _ = Close(fd); }
    }

    const int EINVAL = 22;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
