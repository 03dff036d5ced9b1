namespace VkPrompt.Runtime.Kernels;

/// <summary>One Adafactor step on the device (see shaders/adafactor.comp). The step counter
/// lives in state[0] and advances on the device, so a replayed training graph needs no upload.</summary>
internal static class AdafactorKernel
{
    static readonly KernelLayout Layout = new([Access.ReadWrite, Access.Read, Access.ReadWrite, Access.Write], 32);

    readonly record struct Push(uint Rows, uint Cols, uint Factored, float Lr, float Decay, float Clip, float WeightDecay, float Eps1);

    /// <param name="g">the graph the step is recorded into.</param>
    /// <param name="param">the parameter (rows x cols), updated in place.</param>
    /// <param name="grad">its gradient.</param>
    /// <param name="state">the step counter and second moment, <see cref="AdafactorSettings.StateLength"/> floats, zero before the first step.</param>
    /// <param name="update">scratch of rows*cols floats for the unclipped update.</param>
    /// <param name="rows">the parameter's rows.</param>
    /// <param name="cols">the parameter's columns.</param>
    /// <param name="s">the optimizer's settings.</param>
    public static void Step(CommandGraph g, GpuBuffer param, GpuBuffer grad, GpuBuffer state, GpuBuffer update, int rows, int cols, AdafactorSettings s)
    {
        // 256 threads: enough to hide latency in the single group, within every device's limit.
        var k = g.Context.Kernel("adafactor", Layout, 256);
        var push = new Push((uint)rows, (uint)cols, s.Factored(rows, cols) ? 1u : 0u, s.LearningRate, s.DecayRate, s.ClippingThreshold, s.WeightDecay, s.Epsilon1);
        g.Dispatch(k, (1, 1, 1), push, param, grad, state, update);
    }
}
