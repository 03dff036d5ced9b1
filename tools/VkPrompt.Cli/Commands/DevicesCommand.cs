using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Runtime;

namespace VkPrompt.Cli.Commands;

internal static class DevicesCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json")
        {
            Description = "Print a JSON array with one object per device: every capability field, and the device plan (\"plan\": every kernel choice " +
                          "VkPrompt makes for it with the VKPROMPT_* variables as set), instead of a table. Off by default.",
        };
        var capabilities = new Option<string?>("--capabilities")
        {
            HelpName = "FILE",
            Description = "Plan for the devices recorded in FILE (what 'vkprompt devices --json' printed on another machine, e.g. " +
                          "docs/results/h100-2026-11-26c/devices.json) instead of this machine's. VKPROMPT_MATRIX_UNITS=emulate plans for emulated matrix units.",
        };
        var command = new Command("devices",
            "List every Vulkan device with the capabilities VkPrompt picks kernels by: type, driver, subgroup size, " +
            "16-bit and 8-bit support, limits, memory heaps and pipeline-cache key, and what it picks (the device plan). " +
            "The index or a part of the name selects a device with --device or VKPROMPT_DEVICE.")
        {
            json, capabilities,
        };
        command.SetAction(parse =>
        {
            var devices = parse.GetValue(capabilities) is { } file ? Recorded(file) : GpuContext.ListDevices();
            if (devices.Count == 0) throw new GpuException(GpuContext.NoDeviceMessage);
            var options = EnvironmentSettings.GpuOptions();
            if (parse.GetValue(json))
                Cli.Out(parse).WriteLine(Json(devices, options).ToJsonString(CliJson.Default.Options));
            else
                Cli.Console(parse).Write(Table(devices, devices.Select(d => Plan(d, options)).ToList()));
            return Cli.Ok;
        });
        return command;
    }

    /// <summary>Each device's capabilities with its plan beside them under "plan" (a device the
    /// options cannot be planned for gets the reason as "planError").</summary>
    internal static JsonArray Json(IReadOnlyList<DeviceCapabilities> devices, GpuOptions options)
    {
        var array = new JsonArray();
        foreach (var d in devices)
        {
            var node = JsonSerializer.SerializeToNode(d, CliJson.Default.DeviceCapabilities)!.AsObject();
            try { node["plan"] = DevicePlan.For(d, options).ToJson(); }
            catch (GpuException e) { node["planError"] = e.Message; }
            array.Add((JsonNode)node);
        }
        return array;
    }

    static DevicePlan? Plan(DeviceCapabilities d, GpuOptions options)
    {
        try { return DevicePlan.For(d, options); }
        catch (GpuException) { return null; }
    }

    /// <summary>The devices a <c>vkprompt devices --json</c> printed.</summary>
    internal static IReadOnlyList<DeviceCapabilities> Recorded(string file)
    {
        if (Directory.Exists(file)) throw new UsageException($"--capabilities {file} is a directory; it names the file 'vkprompt devices --json' wrote");
        try
        {
            var devices = JsonSerializer.Deserialize(File.ReadAllText(file), CliJson.Default.IReadOnlyListDeviceCapabilities);
            return devices is { Count: > 0 } ? devices : throw new UsageException($"--capabilities {file}: holds no devices");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--capabilities {file}: {e.Message}");
        }
        catch (JsonException e)
        {
            throw new UsageException($"--capabilities {file}: not what 'vkprompt devices --json' prints: {JsonMessages.Describe(e)}");
        }
    }

    /// <summary>One column per device so devices compare side by side, one row per field.</summary>
    static Table Table(IReadOnlyList<DeviceCapabilities> devices, IReadOnlyList<DevicePlan?> plans)
    {
        var table = new Table().AddColumn(new TableColumn(""));
        foreach (var d in devices) table.AddColumn(new TableColumn(new Text($"{d.Index}: {d.Name}", new Style(decoration: Decoration.Bold))));

        void Row(string field, Func<DeviceCapabilities, string> value) =>
            table.AddRow(devices.Select(value).Select(v => (Spectre.Console.Rendering.IRenderable)new Text(v)).Prepend(new Text(field)));

        Row("type", d => d.DeviceType);
        Row("vendor", d => $"{d.Vendor} (0x{d.VendorId:X4})");
        Row("driver", d => $"{d.DriverName} {d.DriverVersion}");
        Row("driver info", d => d.DriverInfo);
        Row("Vulkan API", d => d.ApiVersion);
        Row("subgroup size", d => d.SubgroupSize.ToString(CultureInfo.InvariantCulture) + (d.SubgroupSizeControl ? " (pinnable, VK_EXT_subgroup_size_control)" : ""));
        Row("float16 arithmetic", d => YesNo(d.ShaderFloat16));
        Row("16-bit storage", d => YesNo(d.StorageBuffer16Bit));
        Row("int8 arithmetic", d => YesNo(d.ShaderInt8));
        Row("bfloat16", d => YesNo(d.BFloat16));
        Row("matrix units", d => d.CooperativeMatrixKhr || d.CooperativeMatrixNv ? $"through {d.CooperativeMatrixExtensions()} (fp16/bf16 weights run on them unless VKPROMPT_MATRIX_UNITS=0)" : "no");
        Row("matrix shapes", d => d.CooperativeMatrixShapes.Count == 0 ? "-" : string.Join(", ", d.CooperativeMatrixShapes));
        Row("bf16 fragments", d => d.CooperativeMatrixBf16
            ? "16x16x16 bf16·bf16+f32 with VK_KHR_shader_bfloat16 (the plan's matrixUnitsOperands; VKPROMPT_MATRIX_UNITS_OPERANDS=fp16 forces fp16)" : "no");
        Row("workgroup-scope matrices", d => d.CooperativeMatrix2Nv
            ? $"VK_NV_cooperative_matrix2 (VKPROMPT_MATRIX_UNITS=nv2): {string.Join(", ", d.CooperativeMatrix2Shapes.Select(s => $"{s.Invocations} invocations in multiples of {s.MGranularity}x{s.NGranularity}x{s.KGranularity}"))}, up to {d.CooperativeMatrix2MaxDimension}"
            : "no");
        Row("max storage buffer range", d => Bytes(d.MaxStorageBufferRange));
        Row("max memory allocation", d => Bytes(d.MaxMemoryAllocationSize));
        Row("shared memory / workgroup", d => Bytes(d.MaxComputeSharedMemorySize));
        Row("invocations / workgroup", d => d.MaxComputeWorkGroupInvocations.ToString(CultureInfo.InvariantCulture));
        Row("push constants", d => Bytes(d.MaxPushConstantsSize));
        Row("max workgroup count", d => $"{d.MaxWorkGroupCountX} x {d.MaxWorkGroupCountY} x {d.MaxWorkGroupCountZ}");
        Row("timestamps", d => d.TimestampsSupported ? $"yes ({d.TimestampPeriodNs.ToString("0.###", CultureInfo.InvariantCulture)} ns/tick)" : "no");
        Row("pipeline statistics", d => d.PipelineExecutableStatistics ? "yes (VKPROMPT_PIPELINE_STATS=1)" : "no");
        Row("memory heaps", d => string.Join('\n', d.Heaps.Select((h, i) => $"{i}: {Bytes(h.Size)}{(h.DeviceLocal ? " device-local" : "")}")));
        Row("pipeline cache key", d => d.PipelineCacheKey);
        var column = devices.ToList();
        string Planned(DeviceCapabilities d, Func<DevicePlan, string> value) => plans[column.IndexOf(d)] is { } p ? value(p) : "-";
        Row("plan: matrix units", d => Planned(d, p => p.MatrixUnits.Extension() + (p.MatrixUnitsSubgroupPinned ? $", in subgroups pinned to {p.MatrixUnitsSubgroupSize}" : "")
                                                                 + (p.MatrixUnitsFragment.Composed ? $", each {p.MatrixUnitsFragment}" : "")));
        Row("plan: portable product", d => Planned(d, p => p.ForcedPortableTiling ?? p.PortableRule));
        Row("plan: fp16/bf16 weights stored as", d => Planned(d, p => $"{p.StoredPrecision(WeightPrecision.Fp16).Name()}/{p.StoredPrecision(WeightPrecision.Bf16).Name()}"));
        Row("plan: attention fused by default", d => Planned(d, p => p.FusesLargeAttention ? $"from {DevicePlan.FuseFromScoresPerHead} scores a head" : "only where scores exceed a binding"));
        Row("plan: row kernels", d => Planned(d, p => $"{p.RowLocalSize} invocations{(p.SubgroupRows ? ", short softmax rows a subgroup" : "")}"));
        return table;
    }

    static string YesNo(bool b) => b ? "yes" : "no";

    static string Bytes(long bytes)
    {
        const double KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024;
        var (value, unit) = bytes switch
        {
            >= (long)GiB => (bytes / GiB, "GiB"),
            >= (long)MiB => (bytes / MiB, "MiB"),
            >= (long)KiB => (bytes / KiB, "KiB"),
            _ => (bytes, "B"),
        };
        return $"{value.ToString("0.#", CultureInfo.InvariantCulture)} {unit}";
    }
}
