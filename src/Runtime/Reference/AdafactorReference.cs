using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="AdafactorKernel"/>, in double internally. State layout
/// is shared with the kernel: [step counter as uint bits, v] or [step, v_row, v_col].</summary>
internal static class AdafactorReference
{
    public static void Step(Span<float> param, ReadOnlySpan<float> grad, Span<float> state, int rows, int cols, AdafactorSettings s)
    {
        int n = rows * cols;
        uint t = BitConverter.SingleToUInt32Bits(state[0]);
        double beta = 1 - Math.Pow(t + 1.0, -s.DecayRate);
        var y = new double[n];
        if (s.Factored(rows, cols))
        {
            for (int r = 0; r < rows; r++)
            {
                double acc = 0;
                for (int c = 0; c < cols; c++) { double gv = grad[r * cols + c]; acc += gv * gv + s.Epsilon1; }
                state[1 + r] = (float)(beta * state[1 + r] + (1 - beta) * acc / cols);
            }
            for (int c = 0; c < cols; c++)
            {
                double acc = 0;
                for (int r = 0; r < rows; r++) { double gv = grad[r * cols + c]; acc += gv * gv + s.Epsilon1; }
                state[1 + rows + c] = (float)(beta * state[1 + rows + c] + (1 - beta) * acc / rows);
            }
            bool colsLargest = cols >= rows;
            int smallLen = colsLargest ? rows : cols, smallBase = colsLargest ? 1 : 1 + rows;
            double mean = 0;
            for (int i = 0; i < smallLen; i++) mean += state[smallBase + i];
            mean /= smallLen;
            for (int i = 0; i < n; i++)
            {
                double vr = state[1 + i / cols], vc = state[1 + rows + i % cols];
                double f = colsLargest ? 1 / Math.Sqrt(vr / mean) / Math.Sqrt(vc) : 1 / Math.Sqrt(vc / mean) / Math.Sqrt(vr);
                y[i] = grad[i] * f;
            }
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                double gv = grad[i];
                double v = beta * state[1 + i] + (1 - beta) * (gv * gv + s.Epsilon1);
                state[1 + i] = (float)v;
                y[i] = gv / Math.Sqrt(v);
            }
        }
        double sq = 0;
        foreach (var u in y) sq += u * u;
        double scale = s.LearningRate / Math.Max(1, Math.Sqrt(sq / n) / s.ClippingThreshold);
        for (int i = 0; i < n; i++) param[i] = (float)((1 - s.WeightDecay) * param[i] - scale * y[i]);
        state[0] = BitConverter.UInt32BitsToSingle(t + 1);
    }
}
