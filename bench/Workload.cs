using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Runtime;

namespace VkPrompt.Bench;

/// <summary>
/// The shapes the benchmarks run at, chosen by VKPROMPT_BENCH_WORKLOAD: "t5-small" (the default:
/// the acceptance shape of `vkprompt bench`, batch 8, input 128, prompt 100, target 8, and a
/// whole step at batch 2, input 32, prompt 20, so the suite finishes in minutes on lavapipe), or
/// "t5-base" / "t5-large" (the GPU shape of tools/device-bench.sh, batch 32, input 512, prompt
/// 100, target 8, for kernels and step alike).
/// </summary>
public sealed record Workload
{
    // Public for BenchmarkDotNet (a parameter of StepCase); the batch shapes are the library's
    // internal BatchShape, so they and the constructor are internal.
    internal Workload(string model, T5Config config, BatchShape kernels, BatchShape step) =>
        (Model, Config, Kernels, Step) = (model, config, kernels, step);

    public string Model { get; }
    public T5Config Config { get; }
    internal BatchShape Kernels { get; }
    internal BatchShape Step { get; }

    public static Workload FromEnvironment()
    {
        var name = Environment.GetEnvironmentVariable("VKPROMPT_BENCH_WORKLOAD") is { Length: > 0 } w ? w : "t5-small";
        var config = T5Config.Named(name);
        return name == "t5-small"
            ? new Workload(name, config, new BatchShape(8, 128, 8, 100), new BatchShape(2, 32, 8, 20))
            : new Workload(name, config, new BatchShape(32, 512, 8, 100), new BatchShape(32, 512, 8, 100));
    }

    /// <summary>What the device the benchmarks run on (VKPROMPT_DEVICE, else auto) can do; the
    /// cases with 16-bit weights exist only where it reads them.</summary>
    public static DeviceCapabilities SelectedDevice()
    {
        var devices = GpuContext.ListDevices();
        return devices[DeviceBringUp.Choose(devices, EnvironmentSettings.GpuOptions().Device)];
    }
}
