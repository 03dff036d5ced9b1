using VkPrompt.Cli;
using VkPrompt.Runtime;
using VkPrompt.Tests.Runtime;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>EnvironmentSettings: the one reader of the VKPROMPT_* variables, for the CLI, the
/// benchmarks and the tests; the library's options keep their plain defaults.</summary>
public sealed class EnvironmentSettingsTests
{
    static GpuOptions Read(params (string Name, string Value)[] variables) =>
        EnvironmentSettings.Read(name => variables.FirstOrDefault(v => v.Name == name).Value);

    /// <summary>VKPROMPT_MATRIX_UNITS takes its words alone or an extension with all (nv2,all), in any case.</summary>
    [Theory]
    [InlineData(null, MatrixUnitsRequest.Auto, false)]
    [InlineData("", MatrixUnitsRequest.Auto, false)]
    [InlineData("1", MatrixUnitsRequest.Auto, false)]
    [InlineData("0", MatrixUnitsRequest.Off, false)]
    [InlineData("nv2", MatrixUnitsRequest.Nv2, false)]
    [InlineData("nv2,all", MatrixUnitsRequest.Nv2, true)]
    [InlineData("KHR, all", MatrixUnitsRequest.Khr, true)]
    [InlineData("nv", MatrixUnitsRequest.Nv, false)]
    [InlineData("all", MatrixUnitsRequest.Auto, true)]
    [InlineData("emulate", MatrixUnitsRequest.Emulate, false)]
    [InlineData("emulate,all", MatrixUnitsRequest.Emulate, true)]
    public void MatrixUnitsVariableTakesItsWordsAndCombinations(string? value, MatrixUnitsRequest request, bool all) =>
        Assert.Equal((request, all), EnvironmentSettings.MatrixUnits(value));

    /// <summary>An unknown word or two extensions are refused, naming the variable, rather than
    /// silently running the defaults.</summary>
    [Theory]
    [InlineData("nv3", "unknown value 'nv3'"), InlineData("khr,nv2", "more than one extension"), InlineData("all,yes", "unknown value 'yes'")]
    public void MatrixUnitsVariableRefusesWhatItDoesNotKnow(string value, string message)
    {
        var e = Assert.Throws<GpuException>(() => EnvironmentSettings.MatrixUnits(value));
        Assert.Contains($"VKPROMPT_MATRIX_UNITS={value}", e.Message);
        Assert.Contains(message, e.Message);
    }

    /// <summary>VKPROMPT_MATRIX_UNITS_OPERANDS takes auto, fp16 or bf16 in any case, anything else
    /// an error naming it; an error about the fragments it asks for names it too.</summary>
    [Theory]
    [InlineData("auto", MatrixUnitsOperandsRequest.Auto), InlineData("FP16", MatrixUnitsOperandsRequest.Fp16), InlineData("bf16", MatrixUnitsOperandsRequest.Bf16)]
    [InlineData("fp8", null)]
    public void MatrixUnitsOperandsVariable(string value, MatrixUnitsOperandsRequest? request)
    {
        if (request is null)
        {
            Assert.Contains($"VKPROMPT_MATRIX_UNITS_OPERANDS={value}: expected auto, fp16 or bf16",
                            Assert.Throws<GpuException>(() => Read(("VKPROMPT_MATRIX_UNITS_OPERANDS", value))).Message);
            return;
        }
        var o = Read(("VKPROMPT_MATRIX_UNITS_OPERANDS", value));
        Assert.Equal(request, o.MatrixUnitsOperands);
        Assert.Equal($"VKPROMPT_MATRIX_UNITS_OPERANDS={value} (GpuOptions.MatrixUnitsOperands={request})", o.Describe(nameof(GpuOptions.MatrixUnitsOperands), o.MatrixUnitsOperands));
    }

    /// <summary>No variable set: exactly the library's defaults, but for the pipeline cache the
    /// CLI keeps under the XDG cache directory (else ~/.cache).</summary>
    [Fact]
    public void UnsetVariablesLeaveTheDefaults()
    {
        Assert.Equal(new GpuOptions(), Read());
        Assert.Empty(Read().Sources);
        Assert.Equal(Path.Combine("/x", "vkprompt"), Read(("XDG_CACHE_HOME", "/x"), ("HOME", "/h")).PipelineCacheDirectory);
        Assert.Equal(Path.Combine("/h", ".cache", "vkprompt"), Read(("HOME", "/h")).PipelineCacheDirectory);
        Assert.Null(new GpuOptions().PipelineCacheDirectory);
    }

    /// <summary>Each variable sets its option, and an error about a value names the variable it
    /// came from, until the program replaces the value; a value set in code names the option alone.</summary>
    [Fact]
    public void EveryVariableSetsItsOptionAndIsNamedInErrors()
    {
        var o = Read(("VKPROMPT_DEVICE", "1"), ("VKPROMPT_VALIDATION", "1"), ("VKPROMPT_PROFILE", "1"), ("VKPROMPT_MATRIX_UNITS", "khr,all"),
                     ("VKPROMPT_MATRIX_UNITS_HALF_A", "0"), ("VKPROMPT_MATRIX_UNITS_PIN", "0"), ("VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS", "0"), ("VKPROMPT_MATMUL_TILING", "8x8x4x4x0"),
                     ("VKPROMPT_MATRIX_UNITS_TILING", "2x2x2x2x32"), ("VKPROMPT_MATRIX_UNITS_FUSED_TILING", "4x32"), ("VKPROMPT_ROW_LOCAL_SIZE", "64"),
                     ("VKPROMPT_ROW_SUBGROUP", "0"), ("VKPROMPT_MATMUL_TUNE", "1"), ("VKPROMPT_PIPELINE_STATS", "1"), ("VKPROMPT_PLAN_FOR_GPU", "1"));
        var expected = new GpuOptions
        {
            Device = "1", Validation = true, Profiling = true, MatrixUnits = MatrixUnitsRequest.Khr, MatrixUnitsAllProducts = true,
            MatrixUnitsHalfActivations = false, MatrixUnitsPinSubgroups = false, MatrixUnitsFp16Weights = false, MatMulTiling = "8x8x4x4x0", MatrixUnitsTiling = "2x2x2x2x32",
            MatrixUnitsFusedAttentionTiling = "4x32", RowLocalSize = 64, SubgroupRows = false, TuneMatMul = true, PipelineStatistics = true, PlanForGpu = true,
        };
        Assert.Equal(expected, o with { Sources = expected.Sources });
        Assert.Equal("VKPROMPT_MATMUL_TILING=8x8x4x4x0 (GpuOptions.MatMulTiling=8x8x4x4x0)", o.Describe(nameof(GpuOptions.MatMulTiling), o.MatMulTiling));
        Assert.Equal("VKPROMPT_ROW_LOCAL_SIZE=64 (GpuOptions.RowLocalSize=64)", o.Describe(nameof(GpuOptions.RowLocalSize), o.RowLocalSize));
        Assert.Equal("VKPROMPT_MATRIX_UNITS=khr,all (GpuOptions.MatrixUnits=Khr)", o.Describe(nameof(GpuOptions.MatrixUnits), o.MatrixUnits));
        var replaced = o with { MatMulTiling = "4x4x4x4x4" };
        Assert.Equal("GpuOptions.MatMulTiling=4x4x4x4x4", replaced.Describe(nameof(GpuOptions.MatMulTiling), replaced.MatMulTiling));
        Assert.Equal(MatrixUnitsRequest.Off, Read(("VKPROMPT_MATRIX_UNITS", "0")).MatrixUnits);
        Assert.Contains("VKPROMPT_ROW_LOCAL_SIZE=many", Assert.Throws<GpuException>(() => Read(("VKPROMPT_ROW_LOCAL_SIZE", "many"))).Message);
    }

    /// <summary>A variable renamed to the matrix-units spelling is refused where it is set,
    /// naming its new name, so a stale script does not silently run the defaults; alongside
    /// the new spelling too, and empty is unset as for every variable.</summary>
    [Theory]
    [InlineData("VKPROMPT_COOPMAT", "nv2,all", "VKPROMPT_COOPMAT=nv2,all: VKPROMPT_COOPMAT was renamed VKPROMPT_MATRIX_UNITS")]
    [InlineData("VKPROMPT_DISABLE_COOPMAT", "1", "VKPROMPT_DISABLE_COOPMAT=1: VKPROMPT_DISABLE_COOPMAT was removed; VKPROMPT_MATRIX_UNITS=0 does what it did")]
    [InlineData("VKPROMPT_COOPMAT_TILING", "2x2x2x2x32", "VKPROMPT_COOPMAT_TILING=2x2x2x2x32: VKPROMPT_COOPMAT_TILING was renamed VKPROMPT_MATRIX_UNITS_TILING")]
    [InlineData("VKPROMPT_COOPMAT_FLASH_TILING", "4x32", "VKPROMPT_COOPMAT_FLASH_TILING=4x32: VKPROMPT_COOPMAT_FLASH_TILING was renamed VKPROMPT_MATRIX_UNITS_FUSED_TILING")]
    [InlineData("VKPROMPT_COOPMAT_FP16_WEIGHTS", "0", "VKPROMPT_COOPMAT_FP16_WEIGHTS=0: VKPROMPT_COOPMAT_FP16_WEIGHTS was renamed VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS")]
    [InlineData("VKPROMPT_COOPMAT_HALF_A", "0", "VKPROMPT_COOPMAT_HALF_A=0: VKPROMPT_COOPMAT_HALF_A was renamed VKPROMPT_MATRIX_UNITS_HALF_A")]
    public void RenamedVariablesAreRefusedNamingTheirNewName(string old, string value, string message)
    {
        Assert.Equal(message, Assert.Throws<GpuException>(() => Read((old, value))).Message);
        Assert.Equal(message, Assert.Throws<GpuException>(() => Read(("VKPROMPT_MATRIX_UNITS", "1"), (old, value))).Message);
        Assert.Equal(new GpuOptions(), Read((old, "")));
        Assert.Equal(6, EnvironmentSettings.RenamedVariables.Count);
    }

    /// <summary>An option whose value the device cannot take names the variable it came from in
    /// the error, and the option alone where the program set it.</summary>
    [Fact]
    public void PlanErrorsNameTheVariableOnlyWhereTheValueCameFromOne()
    {
        var caps = DevicePlanTests.H100;
        var fromVariable = Read(("VKPROMPT_ROW_LOCAL_SIZE", "3"));
        Assert.StartsWith("VKPROMPT_ROW_LOCAL_SIZE=3 (GpuOptions.RowLocalSize=3): needs a multiple",
                          Assert.Throws<GpuException>(() => DevicePlan.For(caps, fromVariable)).Message);
        Assert.StartsWith("GpuOptions.RowLocalSize=3: needs a multiple",
                          Assert.Throws<GpuException>(() => DevicePlan.For(caps, new GpuOptions { RowLocalSize = 3 })).Message);
    }
}
