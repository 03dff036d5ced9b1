using System.Buffers.Binary;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using Xunit;
using static VkPrompt.Tests.Model.ModelTestFiles;

namespace VkPrompt.Tests.Model;

public sealed class SafetensorsTests
{
    [Fact]
    public void GoldenF32TensorsReadAsStored()
    {
        var path = Path.Combine(TinyV11, "model.safetensors");
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        var raw = File.ReadAllBytes(path);
        foreach (var t in file.Tensors.Values)
        {
            Assert.Equal("F32", t.DType);
            var values = new float[t.ElementCount];
            file.ReadFloat32(t.Name, values);
            for (int i = 0; i < values.Length; i++)
                Assert.Equal(BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan((int)t.Offset + 4 * i)), values[i]);
        }
    }

    /// <summary>Issue 21 finding 6: a checkpoint another program truncates after it was opened
    /// (a download restarted, a copy overwritten) is a one-line error naming the file, not a
    /// crash: its data is read, not mapped, so the read comes back short instead of SIGBUS.</summary>
    [Fact]
    public void AFileTruncatedAfterOpeningIsAnErrorNotACrash()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        File.Copy(Path.Combine(TinyV11, "model.safetensors"), path);
        using var file = SafetensorsFile.Open(path);
        var last = file.Tensors.Values.MaxBy(t => t.Offset)!;
        using (var truncate = System.Diagnostics.Process.Start("truncate", ["-s", (last.Offset + 4).ToString(), path]))
        {
            truncate.WaitForExit();
            Assert.Equal(0, truncate.ExitCode);
        }
        var e = Assert.Throws<ModelFormatException>(() => file.ReadFloat32(last.Name, new float[last.ElementCount]));
        Assert.Contains(path, e.Message);
        Assert.Contains("shrank after it was opened", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // What lies before the cut still reads.
        var first = new float[1];
        file.ReadFloat32(last.Name, first);
    }

    [Fact]
    public void GoldenBf16ConvertsToTheValueItsBitsEncode()
    {
        var path = Path.Combine(TinyV10Bf16, "model.safetensors");
        using var file = SafetensorsFile.Open(path);
        var raw = File.ReadAllBytes(path);
        var t = file.Tensors["shared.weight"];
        Assert.Equal("BF16", t.DType);
        Assert.Equal([904L, 64L], t.Shape);
        var values = new float[t.ElementCount];
        file.ReadFloat32(t.Name, values);
        for (int i = 0; i < values.Length; i += 97)
            Assert.Equal(DecodeBf16ByHand(BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan((int)t.Offset + 2 * i))), values[i]);

        // The same elements read from an offset into the tensor.
        var tail = new float[10];
        file.ReadFloat32(t.Name, tail, firstElement: 1000);
        Assert.Equal(values[1000..1010], tail);
    }

    /// <summary>sign · 2^(exponent − 127) · (1 + mantissa/128), subnormals 2^−126 · mantissa/128.</summary>
    static float DecodeBf16ByHand(ushort bits)
    {
        int sign = bits >> 15, exponent = (bits >> 7) & 0xFF, mantissa = bits & 0x7F;
        Assert.NotEqual(0xFF, exponent);
        double magnitude = exponent == 0 ? Math.Pow(2, -126) * (mantissa / 128.0) : Math.Pow(2, exponent - 127) * (1 + mantissa / 128.0);
        return (float)(sign == 1 ? -magnitude : magnitude);
    }

    [Fact]
    public void F16AndBf16AreConverted()
    {
        using var dir = new TempDir();
        var path = dir.File("half.safetensors");
        // 1.5 = F16 0x3E00, -2 = 0xC000; BF16 0.15625 = 0x3E20, -3 = 0xC040.
        byte[] data = [0x00, 0x3E, 0x00, 0xC0, 0x20, 0x3E, 0x40, 0xC0];
        WriteRaw(path, """{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}""", data);
        using var file = SafetensorsFile.Open(path);
        var v = new float[2];
        file.ReadFloat32("h", v);
        Assert.Equal([1.5f, -2f], v);
        file.ReadFloat32("b", v);
        Assert.Equal([0.15625f, -3f], v);
    }

    [Fact]
    public void WriterRoundTripsAndPadsTheHeader()
    {
        using var dir = new TempDir();
        var path = dir.File("w.safetensors");
        float[] a = [1, 2, 3, 4, 5, 6], b = [-7.25f], c = [];
        SafetensorsWriter.Write(path, [("a", [2, 3], a), ("b.scalar", [], b), ("empty", [0, 4], c)], new Dictionary<string, string> { ["format"] = "pt" });

        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal([2L, 3L], file.Tensors["a"].Shape);
        Assert.Empty(file.Tensors["b.scalar"].Shape);
        Assert.Equal([0L, 4L], file.Tensors["empty"].Shape);
        var read = new float[6];
        file.ReadFloat32("a", read);
        Assert.Equal(a, read);
        var scalar = new float[1];
        file.ReadFloat32("b.scalar", scalar);
        Assert.Equal(b, scalar);
    }

    [Fact]
    public void FailedWriteLeavesThePreviousFile()
    {
        using var dir = new TempDir();
        var path = dir.File("keep.safetensors");
        SafetensorsWriter.Write(path, [("a", [2], new float[] { 1, 2 })], null);
        var before = File.ReadAllBytes(path);
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [("a", [3], new float[] { 1, 2 })], null));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void ReadingPastTheTensorThrows()
    {
        using var file = SafetensorsFile.Open(Path.Combine(TinyV11, "model.safetensors"));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReadFloat32(T5Names.FinalNorm(T5Stack.Encoder), new float[128], firstElement: 1));
        Assert.Throws<KeyNotFoundException>(() => file.ReadFloat32("nope", new float[1]));
    }

    [Fact]
    public void FileShorterThanEightBytes()
    {
        using var dir = new TempDir();
        var path = dir.File("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        Fails(path, "shorter than the 8-byte header length", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void HeaderRunningPastTheFile()
    {
        using var dir = new TempDir();
        var path = dir.File("header.safetensors");
        WriteRaw(path, "{}", [], headerLength: 1000);
        Fails(path, "header of 1000 bytes runs past the end of the file", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void HeaderThatIsNotJson()
    {
        using var dir = new TempDir();
        var path = dir.File("json.safetensors");
        WriteRaw(path, "{\"a\": [", []);
        Fails(path, "header is not valid JSON", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void OffsetsPastTheEndOfTheFile()
    {
        using var dir = new TempDir();
        var path = dir.File("past.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", new byte[8]);
        Fails(path, "tensor a: data_offsets [0, 16] run past the end of the file", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void OverlappingTensors()
    {
        using var dir = new TempDir();
        var path = dir.File("overlap.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", new byte[12]);
        Fails(path, "tensors a and b overlap", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void BytesBelongingToNoTensor()
    {
        using var dir = new TempDir();
        var path = dir.File("gap.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", new byte[8]);
        Fails(path, "the last 4 bytes of the file belong to no tensor", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void ByteSizeDisagreeingWithShape()
    {
        using var dir = new TempDir();
        var path = dir.File("size.safetensors");
        WriteRaw(path, """{"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]}}""", new byte[8]);
        Fails(path, "tensor a is BF16 [2, 3], 12 bytes, but its data_offsets [0, 8] span 8 bytes", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void UnknownDTypeNamesTensorAndDType()
    {
        using var dir = new TempDir();
        var path = dir.File("dtype.safetensors");
        WriteRaw(path, """{"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,1]}}""", new byte[1]);
        Fails(path, "tensor a has dtype Q4_K", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void IntegerTensorOpensButDoesNotReadAsFloat()
    {
        using var dir = new TempDir();
        var path = dir.File("int.safetensors");
        WriteRaw(path, """{"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}""", new byte[8]);
        using var file = SafetensorsFile.Open(path);
        Fails(path, "tensor step has dtype I64", () => file.ReadFloat32("step", new float[1]));
    }

    [Fact]
    public void RepeatedTensorName()
    {
        using var dir = new TempDir();
        var path = dir.File("dup.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", new byte[8]);
        Fails(path, "header names 'a' twice", () => SafetensorsFile.Open(path));
    }

    [Fact]
    public void MissingFile()
    {
        using var dir = new TempDir();
        Fails(dir.File("none.safetensors"), "file not found", () => SafetensorsFile.Open(dir.File("none.safetensors")));
    }

    [Fact]
    public void HeaderPaddingWithSpacesIsAccepted()
    {
        using var dir = new TempDir();
        var path = dir.File("pad.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    """, BitConverter.GetBytes(2.5f));
        using var file = SafetensorsFile.Open(path);
        var v = new float[1];
        file.ReadFloat32("a", v);
        Assert.Equal(2.5f, v[0]);
        Assert.Empty(file.Metadata);
    }
}
