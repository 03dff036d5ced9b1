using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VkPrompt.Runtime;

namespace VkPrompt.Cli.Commands;

internal static class DevicesCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json")
        {
            Description = "Print a JSON array with one object per device and every capability field, instead of a table. Off by default.",
        };
        var command = new Command("devices",
            "List every Vulkan device with the capabilities VkPrompt picks kernels by: type, driver, subgroup size, " +
            "16-bit and 8-bit support, limits, memory heaps and pipeline-cache key. " +
            "The index or a part of the name selects a device with --device or VKPROMPT_DEVICE.")
        {
            json,
        };
        command.SetAction(parse =>
        {
            var devices = GpuContext.ListDevices();
            if (devices.Count == 0) throw new GpuException(GpuContext.NoDeviceMessage);
            if (parse.GetValue(json))
                Cli.Out(parse).WriteLine(JsonSerializer.Serialize(devices, CliJson.Default.IReadOnlyListDeviceCapabilities));
            else
                Cli.Console(parse).Write(Table(devices));
            return Cli.Ok;
        });
        return command;
    }

    /// <summary>One column per device so devices compare side by side, one row per field.</summary>
    static Table Table(IReadOnlyList<DeviceCapabilities> devices)
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
        Row("subgroup size", d => d.SubgroupSize.ToString(CultureInfo.InvariantCulture));
        Row("float16 arithmetic", d => YesNo(d.ShaderFloat16));
        Row("16-bit storage", d => YesNo(d.StorageBuffer16Bit));
        Row("int8 arithmetic", d => YesNo(d.ShaderInt8));
        Row("bfloat16", d => YesNo(d.BFloat16));
        Row("cooperative matrix", d => d.CooperativeMatrixKhr || d.CooperativeMatrixNv ? $"{d.CooperativeMatrixExtensions()} (fp16/bf16 weights run on it unless VKPROMPT_COOPMAT=0)" : "no");
        Row("matrix shapes", d => d.CooperativeMatrixShapes.Count == 0 ? "-" : string.Join(", ", d.CooperativeMatrixShapes));
        Row("workgroup-scope matrices", d => d.CooperativeMatrix2Nv
            ? $"VK_NV_cooperative_matrix2 (VKPROMPT_COOPMAT=nv2): {string.Join(", ", d.CooperativeMatrix2Shapes.Select(s => $"{s.Invocations} invocations in multiples of {s.MGranularity}x{s.NGranularity}x{s.KGranularity}"))}, up to {d.CooperativeMatrix2MaxDimension}"
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
