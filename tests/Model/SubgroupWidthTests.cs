using System.Diagnostics;
using System.Text.Json;
using VkPrompt.Runtime;
using VkPrompt.Tests.Cli;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>Issue 21, item 7: the golden scores, loss and prompt gradient with the plan a GPU gets
/// (<see cref="GpuOptions.PlanForGpu"/>: staged products chosen by shape; the staged fused
/// attention, or unfused attention's subgroup softmax rows; emulated matrix units for 16-bit weights) on lavapipe at each
/// subgroup size it can make, so the kernels AMD's and Intel's GPUs run (subgroups of 8 to 64)
/// are exercised beyond the 32 of NVIDIA's and the 8 of lavapipe's default. llvmpipe reads its
/// vector width (LP_NATIVE_VECTOR_WIDTH: 128, 256, 512 bits, subgroups of 4, 8, 16) when the
/// driver loads, so each width runs the CLI in a child process of its own. The subset that keeps
/// the suite's time small is in docs/reliability.md (and <see cref="Cases"/>). It takes no
/// fixture, but it is in the rest's GPU collection all the same: its minute or two of lavapipe
/// compiling then run beside the op tests' collection from the start
/// (<see cref="GpuCollectionsFirst"/>), where on its own it could come last and run alone.</summary>
[Collection(GpuCollections.Rest)]
public sealed class SubgroupWidthTests
{
    /// <summary>At every width, tiny-v11 p8 with attention unfused (the subgroup softmax rows) and
    /// tiny-v10-bf16 p5 fused (the staged fused kernels, in the GPU's blocks of 32 keys; the
    /// products read bf16 weights); tiny-v10-bf16 p5's products on the emulated matrix-unit
    /// kernel at 128 bits only: that kernel groups 32 invocations whatever the device's subgroup
    /// (<see cref="DevicePlan.MatrixUnitsSubgroupSize"/>). The fused rows take tiny-v10-bf16's
    /// d_kv 8 for lavapipe's compile time: at tiny-v11's d_kv 32 the staged fused kernels in
    /// blocks of 32 cost 50 s to compile (cold, 2-core CI-like machine), at d_kv 8 about 7 s; the
    /// fused kernels use no subgroup operation, and the same code at d_kv 32 runs in
    /// FusedAttentionTests.</summary>
    public static TheoryData<int, string, string, string, string?> Cases()
    {
        var data = new TheoryData<int, string, string, string, string?>();
        foreach (var bits in new[] { 128, 256, 512 })
        {
            data.Add(bits, "tiny-v11", "p8", "unfused", null);
            data.Add(bits, "tiny-v10-bf16", "p5", "fused", null);
        }
        foreach (var attention in new[] { "fused", "unfused" })
            data.Add(128, "tiny-v10-bf16", "p5", attention, "emulate");
        return data;
    }

    static readonly bool HasLavapipe = GpuContext.ListDevices().Any(d => d.DriverName == "llvmpipe");

    [SkippableTheory, MemberData(nameof(Cases))]
    public async Task GoldenChecksPassWithTheGpuPlan(int vectorBits, string model, string caseName, string attention, string? matrixUnits)
    {
        Skip.IfNot(HasLavapipe, "no lavapipe (llvmpipe) device here");
        using var dir = new TempDir();
        string modelDir = Path.Combine(TestPaths.Golden, model), caseDir = Path.Combine(modelDir, "cases", caseName);

        // The child really runs at the width asked for, with the GPU's plan.
        var devices = JsonDocument.Parse((await Vkprompt(vectorBits, attention, matrixUnits, "devices", "--json")).Out).RootElement
            .EnumerateArray().Single(d => d.GetProperty("driverName").GetString() == "llvmpipe");
        Assert.Equal(vectorBits / 32, devices.GetProperty("subgroupSize").GetInt32());
        var plan = devices.GetProperty("plan");
        Assert.True(plan.GetProperty("plansForGpu").GetBoolean());
        Assert.Equal("by-shape", plan.GetProperty("portableProduct").GetProperty("rule").GetString());
        Assert.Equal(matrixUnits is null ? "none" : "emulated", plan.GetProperty("matrixUnits").GetString());
        // Softmax rows of up to 32 elements an invocation take one subgroup: the golden cases' all.
        Assert.Equal(32 * vectorBits / 32, plan.GetProperty("rowKernels").GetProperty("subgroupRowsUpTo").GetInt32());
        // A GPU's plan keeps block activations in bf16, so the run below does: the golden bounds
        // are those of 16-bit activations (ActivationPrecisionTests, docs/numerics.md).
        Assert.Equal("bf16", plan.GetProperty("activations").GetString());
        double u = ActivationPrecision.Bf16.UnitRoundoff();
        void AssertNear(double expected, double actual, string what) =>
            Assert.True(Math.Abs(actual - expected) <= 1e-3 + u / 2 * Math.Abs(expected), $"{what}: {actual} vs golden {expected} (bf16 activations)");

        var scores = (await Vkprompt(vectorBits, attention, matrixUnits, "score", "--model", modelDir, "--data", Path.Combine(caseDir, "data.jsonl"),
                                     "--prompt", Path.Combine(caseDir, "prompt0.safetensors"))).OutLines;
        var golden = CliRun.GoldenDoubles(Path.Combine(caseDir, "scores.json"));
        Assert.Equal(golden.Length, scores.Length);
        for (int i = 0; i < golden.Length; i++)
            AssertNear(golden[i], JsonDocument.Parse(scores[i]).RootElement.GetProperty("logprob").GetDouble(), $"{vectorBits} bits, example {i}");

        string gradFile = dir.File("grad.safetensors");
        var grad = await Vkprompt(vectorBits, attention, matrixUnits, "grad", "--model", modelDir, "--data", Path.Combine(caseDir, "data.jsonl"),
                                  "--prompt", Path.Combine(caseDir, "prompt0.safetensors"), "--output", gradFile);
        AssertNear(CliRun.GoldenLoss(caseDir), JsonDocument.Parse(grad.OutLines.Single()).RootElement.GetProperty("loss").GetDouble(), $"{vectorBits} bits, loss");
        double err = Check.NormRelativeError(CliRun.Tensor(Path.Combine(caseDir, "grad.safetensors"), "prompt_gradient"), CliRun.Tensor(gradFile, "prompt_gradient"));
        double bound = 24 * u + (matrixUnits is null ? 0 : 32 * ActivationPrecision.Fp16.UnitRoundoff());
        Assert.True(err <= bound, $"{vectorBits} bits: prompt gradient relative error {err:E3} > {bound:E1}");
    }

    /// <summary>Runs the CLI built beside the tests in a child process on lavapipe at
    /// <paramref name="vectorBits"/>, with the GPU's plan and every attention
    /// <paramref name="attention"/> (VKPROMPT_ATTENTION: fused or unfused, whatever the sizes); the
    /// VKPROMPT_* variables of the test run are dropped but for validation, so the plan is this
    /// test's alone.</summary>
    static async Task<CliRun> Vkprompt(int vectorBits, string attention, string? matrixUnits, params string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        if (args[0] != "devices") { start.ArgumentList.Add("--device"); start.ArgumentList.Add("llvmpipe"); }
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("VKPROMPT_", StringComparison.Ordinal) && k != "VKPROMPT_VALIDATION").ToList())
            start.Environment.Remove(name);
        start.Environment["LP_NATIVE_VECTOR_WIDTH"] = vectorBits.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["VKPROMPT_PLAN_FOR_GPU"] = "1";
        start.Environment["VKPROMPT_ATTENTION"] = attention;
        if (matrixUnits is not null) start.Environment["VKPROMPT_MATRIX_UNITS"] = matrixUnits;

        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5)))
            try { await p.WaitForExitAsync(timeout.Token); }
            catch (OperationCanceledException) { p.Kill(); throw new TimeoutException($"vkprompt {args[0]} at {vectorBits} bits did not finish in five minutes"); }
        return new CliRun(p.ExitCode, await stdout, await stderr).Succeeded();
    }
}
