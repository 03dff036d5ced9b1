using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Cli;

/// <summary>The one place that reads the VKPROMPT_* environment variables (README's table): for
/// the CLI, the benchmarks and the tests, which take their defaults from the environment. The
/// library reads none; it takes the values made here. Each value read is recorded in
/// <see cref="Runtime.GpuOptions.Sources"/>, so an error about it names the variable.</summary>
public static class EnvironmentSettings
{
    /// <summary>The options the environment asks for, each variable that is unset leaving the
    /// option's default; the pipeline cache in <see cref="PipelineCacheDirectory"/>.</summary>
    /// <exception cref="GpuException">VKPROMPT_MATRIX_UNITS holds a word it does not know, names
    /// two extensions, VKPROMPT_ROW_LOCAL_SIZE is no integer, or a renamed variable is set
    /// (<see cref="RenamedVariables"/>).</exception>
    public static GpuOptions GpuOptions() => Read(Environment.GetEnvironmentVariable);

    /// <summary><see cref="GpuOptions()"/> from the variables <paramref name="variable"/> gives.</summary>
    public static GpuOptions Read(Func<string, string?> variable)
    {
        RefuseRenamed(variable);
        var sources = new Dictionary<string, OptionSource>();
        var options = new GpuOptions { PipelineCacheDirectory = PipelineCacheDirectory(variable) };

        // Reads a variable set to anything; records it as the source of the option it sets.
        string? Set(string name, string option, Func<string, object?> value)
        {
            var text = variable(name);
            if (string.IsNullOrEmpty(text)) return null;
            sources[option] = new OptionSource(name, text, value(text));
            return text;
        }

        if (Set("VKPROMPT_DEVICE", nameof(Runtime.GpuOptions.Device), t => t) is { } device) options = options with { Device = device };
        if (Set("VKPROMPT_VALIDATION", nameof(Runtime.GpuOptions.Validation), t => t == "1") == "1") options = options with { Validation = true };
        if (Set("VKPROMPT_PROFILE", nameof(Runtime.GpuOptions.Profiling), t => t == "1") == "1") options = options with { Profiling = true };

        var (units, all) = MatrixUnits(variable("VKPROMPT_MATRIX_UNITS"));
        if (Set("VKPROMPT_MATRIX_UNITS", nameof(Runtime.GpuOptions.MatrixUnits), _ => units) is not null)
            options = options with { MatrixUnits = units };
        if (all) Set("VKPROMPT_MATRIX_UNITS", nameof(Runtime.GpuOptions.MatrixUnitsAllProducts), _ => true);
        options = options with { MatrixUnitsAllProducts = all };

        if (Set("VKPROMPT_MATRIX_UNITS_OPERANDS", nameof(Runtime.GpuOptions.MatrixUnitsOperands), t => MatrixUnitsOperands(t)) is { } operands)
            options = options with { MatrixUnitsOperands = MatrixUnitsOperands(operands) };
        if (Set("VKPROMPT_MATRIX_UNITS_HALF_A", nameof(Runtime.GpuOptions.MatrixUnitsHalfActivations), t => t != "0") == "0") options = options with { MatrixUnitsHalfActivations = false };
        if (Set("VKPROMPT_MATRIX_UNITS_PIN", nameof(Runtime.GpuOptions.MatrixUnitsPinSubgroups), t => t != "0") == "0") options = options with { MatrixUnitsPinSubgroups = false };
        if (Set("VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS", nameof(Runtime.GpuOptions.MatrixUnitsFp16Weights), t => t != "0") == "0") options = options with { MatrixUnitsFp16Weights = false };
        options = options with
        {
            MatMulTiling = Set("VKPROMPT_MATMUL_TILING", nameof(Runtime.GpuOptions.MatMulTiling), t => t),
            MatrixUnitsTiling = Set("VKPROMPT_MATRIX_UNITS_TILING", nameof(Runtime.GpuOptions.MatrixUnitsTiling), t => t),
            MatrixUnitsFusedAttentionTiling = Set("VKPROMPT_MATRIX_UNITS_FUSED_TILING", nameof(Runtime.GpuOptions.MatrixUnitsFusedAttentionTiling), t => t),
        };
        if (Set("VKPROMPT_ROW_LOCAL_SIZE", nameof(Runtime.GpuOptions.RowLocalSize), t => int.TryParse(t, out int n) ? n : null) is { } rows)
            options = options with
            {
                RowLocalSize = int.TryParse(rows, out int n) ? n : throw new GpuException($"VKPROMPT_ROW_LOCAL_SIZE={rows}: expected a number of invocations, e.g. 128"),
            };
        if (Set("VKPROMPT_ROW_SUBGROUP", nameof(Runtime.GpuOptions.SubgroupRows), t => t != "0") == "0") options = options with { SubgroupRows = false };
        if (Set("VKPROMPT_MATMUL_TUNE", nameof(Runtime.GpuOptions.TuneMatMul), t => t == "1") == "1") options = options with { TuneMatMul = true };
        if (Set("VKPROMPT_PLAN_FOR_GPU", nameof(Runtime.GpuOptions.PlanForGpu), t => t == "1") == "1") options = options with { PlanForGpu = true };
        if (Set("VKPROMPT_PIPELINE_STATS", nameof(Runtime.GpuOptions.PipelineStatistics), t => t == "1") == "1") options = options with { PipelineStatistics = true };
        return sources.Count == 0 ? options : options with { Sources = sources };
    }

    /// <summary>The variables renamed when "matrix units" became the one name for the concept
    /// (cooperative matrix names only the Vulkan extensions), with what replaced them.</summary>
    public static readonly IReadOnlyDictionary<string, string> RenamedVariables = new Dictionary<string, string>
    {
        ["VKPROMPT_COOPMAT"] = "VKPROMPT_MATRIX_UNITS",
        ["VKPROMPT_DISABLE_COOPMAT"] = "VKPROMPT_MATRIX_UNITS=0",
        ["VKPROMPT_COOPMAT_TILING"] = "VKPROMPT_MATRIX_UNITS_TILING",
        ["VKPROMPT_COOPMAT_FLASH_TILING"] = "VKPROMPT_MATRIX_UNITS_FUSED_TILING",
        ["VKPROMPT_COOPMAT_FP16_WEIGHTS"] = "VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS",
        ["VKPROMPT_COOPMAT_HALF_A"] = "VKPROMPT_MATRIX_UNITS_HALF_A",
    };

    /// <summary>Refuses an old spelling that is set: a stale script would otherwise silently run
    /// the defaults it meant to change. Pre-1.0, so no aliases; empty counts as unset, as it
    /// does for every variable here.</summary>
    /// <exception cref="GpuException">One of <see cref="RenamedVariables"/> is set.</exception>
    static void RefuseRenamed(Func<string, string?> variable)
    {
        foreach (var (old, now) in RenamedVariables)
            if (!string.IsNullOrEmpty(variable(old)))
                throw new GpuException(now.Contains('=')
                    ? $"{old}={variable(old)}: {old} was removed; {now} does what it did"
                    : $"{old}={variable(old)}: {old} was renamed {now}");
    }

    static readonly string[] MatrixUnitsWords = ["0", "1", "khr", "nv", "nv2", "all", "emulate"];

    /// <summary>What VKPROMPT_MATRIX_UNITS's comma-separated words ask for ("nv2,all" takes both), in
    /// any case: unset, empty or 1 <see cref="MatrixUnitsRequest.Auto"/>, 0 off, khr, nv, nv2 or
    /// emulate that kernel; all puts every product on the matrix units.</summary>
    /// <exception cref="GpuException">A word it does not know (a typo would otherwise silently
    /// run the defaults), or two extensions.</exception>
    public static (MatrixUnitsRequest Request, bool AllProducts) MatrixUnits(string? value)
    {
        var words = (value ?? "").ToLowerInvariant().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        var unknown = words.Except(MatrixUnitsWords).ToList();
        if (unknown.Count > 0 || words.Intersect(["khr", "nv", "nv2"]).Count() > 1)
            throw new GpuException($"VKPROMPT_MATRIX_UNITS={value}: " +
                                   (unknown.Count > 0 ? $"unknown value '{unknown[0]}'" : "names more than one extension") +
                                   $"; expected one of {string.Join(", ", MatrixUnitsWords)}, or an extension and all, e.g. nv2,all");
        var request = words.Contains("0") ? MatrixUnitsRequest.Off
            : words.Contains("emulate") ? MatrixUnitsRequest.Emulate
            : words.Contains("nv2") ? MatrixUnitsRequest.Nv2
            : words.Contains("nv") ? MatrixUnitsRequest.Nv
            : words.Contains("khr") ? MatrixUnitsRequest.Khr
            : MatrixUnitsRequest.Auto;
        return (request, words.Contains("all"));
    }

    /// <summary>What VKPROMPT_MATRIX_UNITS_OPERANDS asks of the fragments: auto, fp16 or bf16, in any case.</summary>
    /// <exception cref="GpuException">Any other word.</exception>
    public static MatrixUnitsOperandsRequest MatrixUnitsOperands(string value) => value.Trim().ToLowerInvariant() switch
    {
        "auto" => MatrixUnitsOperandsRequest.Auto,
        "fp16" => MatrixUnitsOperandsRequest.Fp16,
        "bf16" => MatrixUnitsOperandsRequest.Bf16,
        _ => throw new GpuException($"VKPROMPT_MATRIX_UNITS_OPERANDS={value}: expected auto, fp16 or bf16"),
    };

    /// <summary>Where the CLI keeps compiled pipelines: $XDG_CACHE_HOME/vkprompt, else
    /// ~/.cache/vkprompt; null (no cache) where neither variable is set.</summary>
    public static string? PipelineCacheDirectory(Func<string, string?> variable)
    {
        var xdg = variable("XDG_CACHE_HOME");
        var home = variable("HOME");
        var root = !string.IsNullOrEmpty(xdg) ? xdg : !string.IsNullOrEmpty(home) ? Path.Combine(home, ".cache") : null;
        return root is null ? null : Path.Combine(root, "vkprompt");
    }

    /// <summary>The variables MPI launchers set to a rank's index among the ranks on its own
    /// machine: MPICH's and Intel MPI's hydra, MVAPICH, Slurm's srun.</summary>
    public static readonly string[] MpiLocalRankVariables = ["MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"];

    /// <summary>This process's index among the MPI ranks on its machine (<see cref="MpiLocalRankVariables"/>,
    /// the first set); null where no launcher says.</summary>
    public static int? MpiLocalRank() =>
        MpiLocalRankVariables.Select(Environment.GetEnvironmentVariable)
            .Select(v => int.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out int n) && n >= 0 ? n : (int?)null)
            .FirstOrDefault(n => n is not null);

    /// <summary>The variable that sets the default attention (<c>--attention</c>).</summary>
    public const string AttentionVariable = "VKPROMPT_ATTENTION";

    /// <summary>The default attention as written: VKPROMPT_ATTENTION where set, else "auto".</summary>
    public static string AttentionText => Environment.GetEnvironmentVariable(AttentionVariable) is { Length: > 0 } v ? v : "auto";

    /// <summary>The default attention (<see cref="AttentionText"/>).</summary>
    /// <exception cref="ArgumentException">VKPROMPT_ATTENTION is none of <see cref="AttentionFusions.Names"/>.</exception>
    public static AttentionFusion Attention() =>
        AttentionFusions.Parse(AttentionText) ?? throw new ArgumentException(AttentionFusions.Invalid(AttentionVariable, AttentionText));
}
