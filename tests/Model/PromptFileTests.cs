using System.Buffers.Binary;
using System.Text;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using Xunit;
using static VkPrompt.Tests.Model.ModelTestFiles;

namespace VkPrompt.Tests.Model;

public sealed class PromptFileTests
{
    static readonly string Prompt0 = Path.Combine(TinyV11, "cases", "p8", "prompt0.safetensors");

    [Fact]
    public void GoldenSafetensorsPrompt()
    {
        var p = PromptFile.Load(Prompt0, 128, out int length);
        Assert.Equal(8, length);
        using var file = SafetensorsFile.Open(Prompt0);
        var expected = new float[8 * 128];
        file.ReadFloat32("prompt_embeddings", expected);
        Assert.Equal(expected, p);
    }

    [Fact]
    public void PromptOfTheWrongWidth()
    {
        Fails(Prompt0, "prompt is [8, 128] but the model's d_model is 64", () => PromptFile.Load(Prompt0, 64, out _));
    }

    [Fact]
    public void NpyPromptOfTheWrongWidth()
    {
        using var dir = new TempDir();
        var path = dir.File("p.npy");
        PromptFile.SaveNpy(path, new float[6], 2, 3);
        Fails(path, "prompt is [2, 3] but the model's d_model is 4", () => PromptFile.Load(path, 4, out _));
    }

    [Fact]
    public void SafetensorsWithoutPromptEmbeddings()
    {
        using var dir = new TempDir();
        var path = dir.File("other.safetensors");
        SafetensorsWriter.Write(path, [("prompt_gradient", [1, 2], new float[2])], null);
        Fails(path, "has no tensor prompt_embeddings (it holds: prompt_gradient)", () => PromptFile.Load(path, 2, out _));
    }

    [Fact]
    public void NpyRoundTrip()
    {
        using var dir = new TempDir();
        var path = dir.File("prompt.npy");
        var data = Check.Random(5 * 7, seed: 4);
        PromptFile.SaveNpy(path, data, 5, 7);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
        Assert.Equal(data, PromptFile.Load(path, 7, out int length));
        Assert.Equal(5, length);

        // The layout numpy itself writes for this array: v1.0, header padded so the data starts at byte 128.
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(128 + data.Length * 4, bytes.Length);
        Assert.Equal("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 7), }", Encoding.ASCII.GetString(bytes, 10, 117).TrimEnd());
        Assert.Equal((byte)'\n', bytes[127]);
    }

    [Fact]
    public void NpyOneDimensionalAndScalarShapes()
    {
        using var dir = new TempDir();
        var path = dir.File("v.npy");
        NpyFile.Write(path, [1f, 2f, 3f], [3]);
        Assert.Contains("'shape': (3,)", File.ReadAllText(path, Encoding.Latin1));
        var (data, shape) = NpyFile.Read(path);
        Assert.Equal([3L], shape);
        Assert.Equal([1f, 2f, 3f], data);
        Fails(path, "prompt is [3]; expected [prompt_length, d_model]", () => PromptFile.Load(path, 3, out _));
    }

    [Fact]
    public void NpyOfAnotherDType()
    {
        using var dir = new TempDir();
        var path = dir.File("f8.npy");
        WriteNpy(path, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", new byte[32]);
        Fails(path, "has dtype '<f8'; VkPrompt reads float32 ('<f4') only", () => PromptFile.Load(path, 2, out _));
    }

    [Fact]
    public void NpyBigEndian()
    {
        using var dir = new TempDir();
        var path = dir.File("be.npy");
        WriteNpy(path, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", new byte[16]);
        Fails(path, "big-endian float32", () => NpyFile.Read(path));
    }

    [Fact]
    public void NpyFortranOrder()
    {
        using var dir = new TempDir();
        var path = dir.File("f.npy");
        WriteNpy(path, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", new byte[16]);
        Fails(path, "is stored in Fortran order", () => NpyFile.Read(path));
    }

    [Fact]
    public void NpyTruncated()
    {
        using var dir = new TempDir();
        var path = dir.File("t.npy");
        WriteNpy(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", new byte[12]);
        Fails(path, "holds 12 bytes of data but float32 [2, 2] takes 16", () => NpyFile.Read(path));
    }

    [Fact]
    public void NotAnNpy()
    {
        using var dir = new TempDir();
        var path = dir.File("x.npy");
        File.WriteAllText(path, "hello, world");
        Fails(path, "is not a .npy file", () => NpyFile.Read(path));
    }

    [Fact]
    public void NpyVersion2Header()
    {
        using var dir = new TempDir();
        var path = dir.File("v2.npy");
        WriteNpy(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", BitConverter.GetBytes(1.5f).Concat(BitConverter.GetBytes(-4f)).ToArray(), major: 2);
        Assert.Equal([1.5f, -4f], PromptFile.Load(path, 2, out int length));
        Assert.Equal(1, length);
    }

    static void WriteNpy(string path, string dict, byte[] data, byte major = 1)
    {
        var header = Encoding.ASCII.GetBytes(dict + "\n");
        using var s = File.Create(path);
        s.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', major, 0]);
        var length = new byte[major == 1 ? 2 : 4];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)header.Length);
        s.Write(length);
        s.Write(header);
        s.Write(data);
    }

    [Fact]
    public void PeftSeq2SeqAdapterGivesTheEncoderHalf()
    {
        using var dir = new TempDir();
        var rows = Check.Random(2 * 3 * 4, seed: 9);
        SafetensorsWriter.Write(dir.File("adapter_model.safetensors"), [("prompt_embeddings", [6, 4], rows)], null);
        File.WriteAllText(dir.File("adapter_config.json"), """{"peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": 3, "num_transformer_submodules": 2, "token_dim": 4}""");
        Assert.Equal(rows[..12], PromptFile.Load(dir.Path, 4, out int length));
        Assert.Equal(3, length);
    }

    [Fact]
    public void PeftAdapterWithOnlyTheEncoderPrompt()
    {
        using var dir = new TempDir();
        var rows = Check.Random(3 * 4, seed: 9);
        SafetensorsWriter.Write(dir.File("adapter_model.safetensors"), [("prompt_embeddings", [3, 4], rows)], null);
        File.WriteAllText(dir.File("adapter_config.json"), """{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 3}""");
        Assert.Equal(rows, PromptFile.Load(dir.Path, 4, out int length));
        Assert.Equal(3, length);
    }

    [Fact]
    public void PeftAdapterThatIsNotAPrompt()
    {
        using var dir = new TempDir();
        SafetensorsWriter.Write(dir.File("adapter_model.safetensors"), [("prompt_embeddings", [3, 4], new float[12])], null);
        File.WriteAllText(dir.File("adapter_config.json"), """{"peft_type": "LORA"}""");
        Fails(dir.File("adapter_config.json"), "peft_type is LORA", () => PromptFile.Load(dir.Path, 4, out _));
    }

    [Fact]
    public void PeftRowsDisagreeingWithTheConfig()
    {
        using var dir = new TempDir();
        SafetensorsWriter.Write(dir.File("adapter_model.safetensors"), [("prompt_embeddings", [5, 4], new float[20])], null);
        File.WriteAllText(dir.File("adapter_config.json"), """{"num_virtual_tokens": 3}""");
        Fails(dir.File("adapter_model.safetensors"), "prompt has 5 rows but adapter_config.json says num_virtual_tokens 3", () => PromptFile.Load(dir.Path, 4, out _));
    }

    [Fact]
    public void UnknownPromptFormat()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("p.txt"), "1 2 3");
        Fails(dir.File("p.txt"), "is not a prompt", () => PromptFile.Load(dir.File("p.txt"), 3, out _));
        Fails(dir.File("gone.npy"), "prompt file not found", () => PromptFile.Load(dir.File("gone.npy"), 3, out _));
    }

    /// <summary>Issue 21 finding 8: a '<f4' hidden in another key or string is not the dtype;
    /// NumPy refuses headers with other keys, and so does VkPrompt, naming the file.</summary>
    [Theory]
    [InlineData("{'x': \"'descr': '<f4'\", 'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }", "key 'x'")]
    [InlineData("{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), 'y': \"'descr': '<f4'\"}", "key 'y'")]
    [InlineData("{'descr': '<f4', 'descr': '|O', 'fortran_order': False, 'shape': (2, 2)}", "'descr' given twice")]
    [InlineData("{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }", "has dtype '|O'")]
    [InlineData("{'descr': '<f4', 'fortran_order': 'False', 'shape': (2, 2)}", "fortran_order is not True or False")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': '(2, 2)'}", "shape is not a tuple")]
    [InlineData("{'descr': '<f4', 'fortran_order': False}", "descr, fortran_order and shape are required")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)} x", "text after the dict")]
    public void NpyHeaderParsedAsADict(string dict, string says)
    {
        using var dir = new TempDir();
        var path = dir.File("h.npy");
        WriteNpy(path, dict, new byte[16]);
        Fails(path, says, () => NpyFile.Read(path));
    }

    /// <summary>Issue 21 finding 7: a prompt of 0 rows, in any format, is refused by name.</summary>
    [Fact]
    public void PromptOfZeroRows()
    {
        using var dir = new TempDir();
        var npy = dir.File("empty.npy");
        WriteNpy(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", []);
        Fails(npy, "prompt is [0, 4]; a prompt needs at least 1 row", () => PromptFile.Load(npy, 4, out _));
        var st = dir.File("empty.safetensors");
        SafetensorsWriter.Write(st, [("prompt_embeddings", [0, 4], Array.Empty<float>())], null);
        Fails(st, "prompt is [0, 4]; a prompt needs at least 1 row", () => PromptFile.Load(st, 4, out _));
    }

    /// <summary>Issue 21 findings 7 and 8: PEFT fields that cannot describe the stored tensor.</summary>
    [Theory]
    [InlineData("""{"num_virtual_tokens": -3}""", "num_virtual_tokens is -3; a prompt needs at least 1 row")]
    [InlineData("""{"num_virtual_tokens": 0}""", "num_virtual_tokens is 0")]
    [InlineData("""{"num_virtual_tokens": -3, "num_transformer_submodules": -2}""", "num_transformer_submodules is -2")]
    [InlineData("""{"num_virtual_tokens": 3, "token_dim": 8}""", "token_dim is 8 but prompt_embeddings is [6, 4]")]
    public void PeftConfigDisagreeingWithTheTensor(string config, string says)
    {
        using var dir = new TempDir();
        SafetensorsWriter.Write(dir.File("adapter_model.safetensors"), [("prompt_embeddings", [6, 4], new float[24])], null);
        File.WriteAllText(dir.File("adapter_config.json"), config);
        Fails(dir.File("adapter_config.json"), says, () => PromptFile.Load(dir.Path, 4, out _));
    }
}
