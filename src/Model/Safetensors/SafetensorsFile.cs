using System.Buffers.Binary;
using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace VkPrompt.Model.Safetensors;

/// <summary>One tensor of a safetensors file. <paramref name="Offset"/> is the absolute byte offset
/// of its data in the file (header included), <paramref name="Bytes"/> its length.</summary>
internal sealed record TensorInfo(string Name, string DType, long[] Shape, long Offset, long Bytes)
{
    public long ElementCount => Product(Shape);

    public string ShapeText => $"[{string.Join(", ", Shape)}]";

    internal static long Product(ReadOnlySpan<long> shape)
    {
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }
}

/// <summary>A .safetensors file: the header is parsed and validated on <see cref="Open"/>; tensor
/// data is read only when asked for, by positional reads, so a checkpoint larger than RAM costs
/// page cache rather than managed memory. Not mapped: another process that truncates a mapped file
/// kills the reader with SIGBUS, where a read just comes back short, which is a clear error.</summary>
internal sealed class SafetensorsFile : IDisposable
{
    // The reference implementation refuses larger headers: such a length means a corrupt or
    // foreign file, and trusting it would allocate gigabytes before the JSON parser objects.
    const long MaxHeaderBytes = 100_000_000;

    // Conversions from 16-bit go through a buffer of this many bytes at a time.
    const int ChunkBytes = 1 << 20;

    readonly FileStream stream;
    bool disposed;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, FileStream stream, Dictionary<string, TensorInfo> tensors, Dictionary<string, string> metadata) =>
        (Path, this.stream, Tensors, Metadata) = (path, stream, tensors, metadata);

    public static SafetensorsFile Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new ModelFormatException(full, "file not found");
        var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var (tensors, metadata) = ReadHeader(stream, full);
            return new SafetensorsFile(full, stream, tensors, metadata);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads <c>dst.Length</c> elements of tensor <paramref name="name"/> (row-major),
    /// starting at element <paramref name="firstElement"/>, converting F16 and BF16 to F32.</summary>
    public void ReadFloat32(string name, Span<float> dst, long firstElement = 0)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!Tensors.TryGetValue(name, out var t)) throw new KeyNotFoundException($"{Path} has no tensor '{name}'");
        ArgumentOutOfRangeException.ThrowIfNegative(firstElement);
        if (firstElement + dst.Length > t.ElementCount)
            throw new ArgumentOutOfRangeException(nameof(dst), $"elements {firstElement}..{firstElement + dst.Length} are past the end of {name} {t.ShapeText}");

        switch (t.DType)
        {
            case "F32":
                ReadExactly(MemoryMarshal.AsBytes(dst), t.Offset + firstElement * 4);
                break;
            case "F16":
            case "BF16":
                var buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
                try
                {
                    for (int done = 0; done < dst.Length;)
                    {
                        int n = Math.Min(ChunkBytes / 2, dst.Length - done);
                        var raw = buffer.AsSpan(0, 2 * n);
                        ReadExactly(raw, t.Offset + (firstElement + done) * 2);
                        var into = dst.Slice(done, n);
                        if (t.DType == "F16") TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(raw), into);
                        else
                        {
                            // BF16 is the top half of an F32: widen each 16-bit pattern and shift it into place.
                            var bits = MemoryMarshal.Cast<float, uint>(into);
                            TensorPrimitives.ConvertTruncating<ushort, uint>(MemoryMarshal.Cast<byte, ushort>(raw), bits);
                            TensorPrimitives.ShiftLeft(bits, 16, bits);
                        }
                        done += n;
                    }
                }
                finally { ArrayPool<byte>.Shared.Return(buffer); }
                break;
            default:
                throw new ModelFormatException(Path, $"tensor {name} has dtype {t.DType}; VkPrompt reads F32, F16 and BF16 only");
        }
    }

    /// <summary>Fills <paramref name="into"/> from byte <paramref name="offset"/> of the file; a
    /// short read means the file shrank after its header was checked.</summary>
    void ReadExactly(Span<byte> into, long offset)
    {
        int total = 0;
        while (total < into.Length)
        {
            int n = RandomAccess.Read(stream.SafeFileHandle, into[total..], offset + total);
            if (n == 0)
                throw new ModelFormatException(Path, $"the file ended at byte {offset + total} while reading bytes {offset}..{offset + into.Length}: " +
                                                     "it shrank after it was opened (another program truncating or rewriting it?)");
            total += n;
        }
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        stream.Dispose();
    }

    /// <summary>Bytes per element of every byte-sized safetensors dtype. Dtypes VkPrompt cannot
    /// convert are still sized, so a file holding, say, an I64 step counter beside its weights opens;
    /// reading that tensor is what fails.</summary>
    static int? DTypeSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "BOOL" or "U8" or "I8" or "F8_E5M2" or "F8_E4M3" or "F8_E8M0" => 1,
        _ => null,
    };

    static (Dictionary<string, TensorInfo>, Dictionary<string, string>) ReadHeader(FileStream stream, string path)
    {
        long length = stream.Length;
        if (length < 8) throw new ModelFormatException(path, $"file is {length} bytes long, shorter than the 8-byte header length");
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(length - 8))
            throw new ModelFormatException(path, $"header of {headerLength} bytes runs past the end of the file ({length} bytes)");
        if ((long)headerLength > MaxHeaderBytes)
            throw new ModelFormatException(path, $"header of {headerLength} bytes exceeds the format's limit of {MaxHeaderBytes}");
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long dataStart = 8 + (long)headerLength;

        // The format's header is UTF-8 JSON; System.Text.Json would accept invalid bytes inside a
        // string until the name is read, and then throw an error that names no file.
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw new ModelFormatException(path, "header is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new ModelFormatException(path, $"header is not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "header is not a JSON object");
            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in root.EnumerateObject())
            {
                // JSON allows a repeated key; the reference parser silently keeps one, which would
                // hide a tensor, so a repeat is an error here.
                if (!seen.Add(entry.Name)) throw new ModelFormatException(path, $"header names '{entry.Name}' twice");
                if (entry.Name == "__metadata__") ParseMetadata(path, entry.Value, metadata);
                else tensors.Add(entry.Name, ParseTensor(path, entry, dataStart, length - dataStart));
            }
            CheckLayout(path, tensors.Values, dataStart, length);
            return (tensors, metadata);
        }
    }

    static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "__metadata__ is not a JSON object");
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, $"__metadata__ entry '{m.Name}' is not a string");
            metadata[m.Name] = m.Value.GetString()!;
        }
    }

    static TensorInfo ParseTensor(string path, JsonProperty entry, long dataStart, long dataLength)
    {
        string name = entry.Name;
        var v = entry.Value;
        if (v.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, $"tensor {name}: header entry is not a JSON object");
        if (!v.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new ModelFormatException(path, $"tensor {name} has no dtype string");
        string dtype = dtypeElement.GetString()!;
        int size = DTypeSize(dtype) ?? throw new ModelFormatException(path, $"tensor {name} has dtype {dtype}, which VkPrompt does not know; it reads F32, F16 and BF16");
        var shape = ReadIntegers(path, v, "shape", name);
        var offsets = ReadIntegers(path, v, "data_offsets", name);
        if (offsets.Length != 2) throw new ModelFormatException(path, $"tensor {name}: data_offsets must be [begin, end]");
        long begin = offsets[0], end = offsets[1];
        string shapeText = $"[{string.Join(", ", shape)}]";
        if (end < begin) throw new ModelFormatException(path, $"tensor {name}: data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw new ModelFormatException(path, $"tensor {name}: data_offsets [{begin}, {end}] run past the end of the file (its data section is {dataLength} bytes)");
        long expected;
        try { expected = checked(TensorInfo.Product(shape) * size); }
        catch (OverflowException) { throw new ModelFormatException(path, $"tensor {name}: shape {shapeText} is too large"); }
        if (end - begin != expected)
            throw new ModelFormatException(path, $"tensor {name} is {dtype} {shapeText}, {expected} bytes, but its data_offsets [{begin}, {end}] span {end - begin} bytes");
        return new TensorInfo(name, dtype, shape, dataStart + begin, end - begin);
    }

    static long[] ReadIntegers(string path, JsonElement tensor, string key, string name)
    {
        if (!tensor.TryGetProperty(key, out var array) || array.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"tensor {name} has no {key} array");
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out values[i]) || values[i] < 0)
                throw new ModelFormatException(path, $"tensor {name}: {key} must hold non-negative integers");
            i++;
        }
        return values;
    }

    /// <summary>As the reference implementation: tensors tile the data section exactly, so two
    /// tensors never share bytes and no byte is left unaccounted for (a sign of a damaged file).</summary>
    static void CheckLayout(string path, IEnumerable<TensorInfo> tensors, long dataStart, long fileLength)
    {
        long position = dataStart;
        TensorInfo? previous = null;
        foreach (var t in tensors.OrderBy(t => t.Offset).ThenBy(t => t.Bytes))
        {
            if (t.Offset < position)
                throw new ModelFormatException(path, $"tensors {previous!.Name} and {t.Name} overlap (bytes {t.Offset - dataStart}..{position - dataStart} of the data section)");
            if (t.Offset > position)
                throw new ModelFormatException(path, $"bytes {position - dataStart}..{t.Offset - dataStart} of the data section belong to no tensor");
            position = t.Offset + t.Bytes;
            previous = t;
        }
        if (position != fileLength)
            throw new ModelFormatException(path, $"the last {fileLength - position} bytes of the file belong to no tensor");
    }
}
