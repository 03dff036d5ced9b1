using System.Reflection;
using System.Runtime.InteropServices;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Kernels;

/// <summary>The push constants of every product kernel, as compiled (the SPIR-V's push-constant
/// block, from include/matmul_push.glsl), against what <see cref="MatMulKernel.Push"/> writes:
/// the same number of members at the same offsets with the same types. CommandGraph checks only
/// the size of Push against the layout it declares; a shader reading a field elsewhere would run
/// wrong. (glslc -O strips member names, so two fields of one type swapped show only in the
/// products MatMulTests checks.)</summary>
public sealed class MatMulPushTests
{
    // The KHR and workgroup-scope kernels need a newer glslc, without which the build leaves them out.
    [SkippableTheory]
    [InlineData("matmul")]
    [InlineData("matmul_half")]
    [InlineData("matmul_int8")]
    [InlineData("matmul_int8_half")]
    [InlineData("matmul_coopmat")]
    [InlineData("matmul_coopmat_emulated")]
    [InlineData("matmul_coopmat_khr")]
    [InlineData("matmul_coopmat_nv2")]
    public void ShaderBlockMatchesPush(string shader)
    {
        if (shader.EndsWith("_khr", StringComparison.Ordinal) || shader.EndsWith("_nv2", StringComparison.Ordinal))
            Skip.IfNot(Kernel.IsEmbedded(shader), $"{shader} was not built");
        using var s = typeof(Kernel).Assembly.GetManifestResourceStream(shader + ".spv");
        Assert.NotNull(s);
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);

        var expected = typeof(MatMulKernel.Push).GetFields(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)
            .Select(f => ((int)Marshal.OffsetOf<MatMulKernel.Push>(f.Name), f.FieldType == typeof(float) ? "float" : f.FieldType == typeof(uint) ? "uint" : f.FieldType.Name))
            .OrderBy(m => m.Item1)
            .ToArray();
        Assert.Equal(expected, SpirvPushConstants.Members(MemoryMarshal.Cast<byte, uint>(bytes)));
    }
}

/// <summary>The push-constant block of a SPIR-V module: its scalar members as (byte offset,
/// type), in offset order, from the module's types and Offset decorations (SPIR-V 1.6 §2.3).</summary>
static class SpirvPushConstants
{
    const uint OpTypeInt = 21, OpTypeFloat = 22, OpTypeStruct = 30, OpTypePointer = 32, OpVariable = 59, OpMemberDecorate = 72;
    const uint DecorationOffset = 35, StorageClassPushConstant = 9;

    public static (int Offset, string Type)[] Members(ReadOnlySpan<uint> words)
    {
        Assert.Equal(0x07230203u, words[0]);
        var scalars = new Dictionary<uint, string>();
        var structs = new Dictionary<uint, uint[]>();
        var pointers = new Dictionary<uint, (uint Storage, uint Type)>();
        var offsets = new Dictionary<(uint Struct, uint Member), int>();
        uint? block = null;
        for (int at = 5; at < words.Length;)
        {
            uint op = words[at] & 0xffff;
            int count = (int)(words[at] >> 16);
            var w = words.Slice(at, count);
            switch (op)
            {
                case OpTypeInt: scalars[w[1]] = w[2] == 32 ? (w[3] != 0 ? "int" : "uint") : $"int{w[2]}"; break;
                case OpTypeFloat: scalars[w[1]] = w[2] == 32 ? "float" : $"float{w[2]}"; break;
                case OpTypeStruct: structs[w[1]] = w[2..].ToArray(); break;
                case OpTypePointer: pointers[w[1]] = (w[2], w[3]); break;
                case OpMemberDecorate when w[3] == DecorationOffset: offsets[(w[1], w[2])] = (int)w[4]; break;
                case OpVariable when w[3] == StorageClassPushConstant:
                    Assert.Null(block);
                    block = pointers[w[1]].Type;
                    break;
            }
            at += count;
        }
        Assert.NotNull(block);
        var members = structs[block.Value];
        return members.Select((type, i) => (offsets[(block.Value, (uint)i)], scalars.GetValueOrDefault(type, $"type %{type}")))
            .OrderBy(m => m.Item1).ToArray();
    }
}
