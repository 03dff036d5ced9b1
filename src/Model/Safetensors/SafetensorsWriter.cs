using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace VkPrompt.Model.Safetensors;

/// <summary>Writes F32 safetensors files atomically (see <see cref="AtomicFile"/>).</summary>
internal static class SafetensorsWriter
{
    public static void Write(string path, IReadOnlyList<(string Name, long[] Shape, ReadOnlyMemory<float> Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var layout = new (string, long[])[tensors.Count];
        for (int i = 0; i < layout.Length; i++) layout[i] = (tensors[i].Name, tensors[i].Shape);
        Write(path, layout, i => tensors[i].Data, metadata);
    }

    /// <summary>Streaming form: the header is written from <paramref name="layout"/>, then
    /// <paramref name="data"/> is asked for each tensor in order and its result written before the
    /// next is asked for, so a caller can produce a checkpoint larger than memory one tensor at a
    /// time (reusing one buffer).</summary>
    public static void Write(string path, IReadOnlyList<(string Name, long[] Shape)> layout, Func<int, ReadOnlyMemory<float>> data,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = Header(layout, metadata);
        using var file = AtomicFile.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        file.Stream.Write(length);
        file.Stream.Write(header);
        for (int i = 0; i < layout.Count; i++)
        {
            var values = data(i).Span;
            long expected = TensorInfo.Product(layout[i].Shape);
            if (values.Length != expected)
                throw new ArgumentException($"tensor {layout[i].Name} is [{string.Join(", ", layout[i].Shape)}] ({expected} elements) but {values.Length} values were given");
            file.Stream.Write(MemoryMarshal.AsBytes(values));
        }
        file.Commit();
    }

    /// <summary>The JSON header, padded with spaces to a multiple of 8 bytes as the reference
    /// implementation does, so that the data that follows is 8-byte aligned in the file.</summary>
    static byte[] Header(IReadOnlyList<(string Name, long[] Shape)> layout, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            var names = new HashSet<string>(StringComparer.Ordinal);
            long offset = 0;
            foreach (var (name, shape) in layout)
            {
                if (name.Length == 0 || name == "__metadata__" || !names.Add(name))
                    throw new ArgumentException($"tensor name '{name}' is empty, reserved or repeated", nameof(layout));
                if (shape.Any(d => d < 0)) throw new ArgumentException($"tensor {name} has a negative dimension", nameof(layout));
                long bytes = checked(TensorInfo.Product(shape) * sizeof(float));
                json.WriteStartObject(name);
                json.WriteString("dtype", "F32");
                json.WriteStartArray("shape");
                foreach (var d in shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}
