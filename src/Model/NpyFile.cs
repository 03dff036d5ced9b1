using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace VkPrompt.Model;

/// <summary>NumPy .npy files holding little-endian float32 in C order, the layout T5X saves
/// prompts in. Other dtypes and layouts are refused rather than converted, so a file is never
/// silently reinterpreted.</summary>
internal static class NpyFile
{
    static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static (float[] Data, long[] Shape) Read(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        Span<byte> preamble = stackalloc byte[12];
        if (stream.Length < 10 || stream.ReadAtLeast(preamble, 10, throwOnEndOfStream: false) < 10 || !preamble[..6].SequenceEqual(Magic))
            throw new ModelFormatException(path, "is not a .npy file (no \\x93NUMPY magic)");
        int major = preamble[6];
        long headerStart = major == 1 ? 10 : 12;
        long headerLength = major switch
        {
            1 => BinaryPrimitives.ReadUInt16LittleEndian(preamble[8..]),
            2 or 3 => BinaryPrimitives.ReadUInt32LittleEndian(preamble[8..]),
            _ => throw new ModelFormatException(path, $".npy format version {major}.{preamble[7]} is not supported"),
        };
        if (headerStart + headerLength > stream.Length) throw new ModelFormatException(path, "header runs past the end of the file");
        var headerBytes = new byte[headerLength];
        stream.Position = headerStart;
        stream.ReadExactly(headerBytes);
        // Versions 1 and 2 store the header in latin-1, version 3 in UTF-8.
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(headerBytes);

        var (dtype, fortranOrder, shapeTuple) = ParseHeader(path, header);
        if (dtype == ">f4")
            throw new ModelFormatException(path, "holds big-endian float32 ('>f4'); VkPrompt reads little-endian float32 ('<f4'): save a.astype('<f4')");
        if (dtype != "<f4")
            throw new ModelFormatException(path, $"has dtype '{dtype}'; VkPrompt reads float32 ('<f4') only: save a.astype('<f4')");
        if (fortranOrder)
            throw new ModelFormatException(path, "is stored in Fortran order; VkPrompt reads C order: save np.ascontiguousarray(a)");

        var shape = ParseShape(path, shapeTuple);
        long count = ElementCount(path, shape);
        long dataBytes = stream.Length - headerStart - headerLength;
        if (dataBytes != count * sizeof(float))
            throw new ModelFormatException(path, $"holds {dataBytes} bytes of data but float32 [{string.Join(", ", shape)}] takes {count * sizeof(float)}");
        var data = new float[count];
        stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
        return (data, shape);
    }

    /// <summary>Writes a version 1.0 .npy of little-endian float32 in C order, atomically.</summary>
    public static void Write(string path, ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        long count = 1;
        foreach (var d in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
            count = checked(count * d);
        }
        if (count != data.Length) throw new ArgumentException($"shape [{string.Join(", ", shape.ToArray())}] holds {count} elements but {data.Length} were given");

        // A 1-D shape is written as the Python tuple "(n,)".
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape.ToArray());
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}";
        // NumPy pads the header with spaces and ends it with a newline so the data starts on a
        // 64-byte boundary of the file, which lets it be memory-mapped and read aligned.
        int headerLength = (10 + dict.Length + 1 + 63) / 64 * 64 - 10;
        var header = Encoding.ASCII.GetBytes(dict.PadRight(headerLength - 1) + "\n");

        using var file = AtomicFile.Create(path);
        Span<byte> preamble = stackalloc byte[10];
        Magic.CopyTo(preamble);
        preamble[6] = 1;
        preamble[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(preamble[8..], checked((ushort)headerLength));
        file.Stream.Write(preamble);
        file.Stream.Write(header);
        file.Stream.Write(MemoryMarshal.AsBytes(data));
        file.Commit();
    }

    static long[] ParseShape(string path, string tuple)
    {
        var parts = tuple.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var shape = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!long.TryParse(parts[i], out shape[i]) || shape[i] < 0)
                throw new ModelFormatException(path, $"shape ({tuple}) is not a tuple of non-negative integers");
        return shape;
    }

    static long ElementCount(string path, long[] shape)
    {
        long count = 1;
        try { foreach (var d in shape) count = checked(count * d); }
        catch (OverflowException) { count = long.MaxValue; }
        if (count > Array.MaxLength) throw new ModelFormatException(path, $"shape [{string.Join(", ", shape)}] is too large");
        return count;
    }

    /// <summary>The header's Python dict literal, parsed token by token as NumPy's safe_eval reads
    /// it: exactly the keys descr, fortran_order and shape, each once, with a string, True/False and
    /// a tuple. Searching the text for "'descr': '...'" instead would find one hidden inside
    /// another key or string (issue 21 finding 8), and read an object array as float32.</summary>
    static (string Descr, bool FortranOrder, string Shape) ParseHeader(string path, string header)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        int at = 0;
        ModelFormatException Bad(string what) => new(path, $"header is not a NumPy array description ({what}): {header.Trim()}");
        void SkipSpace() { while (at < header.Length && char.IsWhiteSpace(header[at])) at++; }
        char Peek() => at < header.Length ? header[at] : '\0';
        string ReadString()
        {
            char quote = header[at];
            int end = header.IndexOf(quote, at + 1);
            if (end < 0) throw Bad("an unterminated string");
            var text = header[(at + 1)..end];
            // No dtype string of a float array needs an escape; refusing them keeps the reader small.
            if (text.Contains('\\')) throw Bad("an escape in a string");
            at = end + 1;
            return text;
        }

        SkipSpace();
        if (Peek() != '{') throw Bad("no dict");
        at++;
        while (true)
        {
            SkipSpace();
            if (Peek() == '}') break;
            if (Peek() is not ('\'' or '"')) throw Bad("a key that is not a string");
            string key = ReadString();
            SkipSpace();
            if (Peek() != ':') throw Bad($"no ':' after '{key}'");
            at++;
            SkipSpace();
            string value;
            // Each value keeps its kind as a first character ('s'tring, 't'uple, 'b'ool), so a
            // quoted 'True' or '(2, 3)' is not taken for a bool or a shape.
            if (Peek() is '\'' or '"') value = "s" + ReadString();
            else if (Peek() == '(')
            {
                int end = header.IndexOf(')', at);
                if (end < 0) throw Bad("an unterminated tuple");
                value = "t" + header[(at + 1)..end];
                at = end + 1;
            }
            else
            {
                int start = at;
                while (at < header.Length && char.IsAsciiLetter(header[at])) at++;
                value = "b" + header[start..at];
                if (value is not ("bTrue" or "bFalse")) throw Bad($"'{key}' has a value that is not a string, a tuple, True or False");
            }
            if (key is not ("descr" or "fortran_order" or "shape")) throw Bad($"key '{key}'; a .npy header holds only descr, fortran_order and shape");
            if (!values.TryAdd(key, value)) throw Bad($"'{key}' given twice");
            SkipSpace();
            if (Peek() == ',') { at++; continue; }
            if (Peek() == '}') break;
            throw Bad($"no ',' or '}}' after '{key}'");
        }
        at++;
        SkipSpace();
        if (at != header.Length) throw Bad("text after the dict");
        if (!values.TryGetValue("descr", out var descr) || !values.TryGetValue("fortran_order", out var fortran) || !values.TryGetValue("shape", out var shape))
            throw Bad("descr, fortran_order and shape are required");
        if (descr[0] != 's') throw Bad("descr is not a string");
        if (fortran[0] != 'b') throw Bad("fortran_order is not True or False");
        if (shape[0] != 't') throw Bad("shape is not a tuple");
        return (descr[1..], fortran == "bTrue", shape[1..]);
    }
}
