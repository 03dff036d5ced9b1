#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "reduce.glsl"

// One Adafactor step on a [rows, cols] parameter, in a single workgroup: the update needs two
// global reductions (the factored means and the update's RMS for clipping), and a prompt is
// small next to a T5 step, so one group with barriers beats several dispatches.
// state[0] holds the step counter t (as float bits of a uint); the kernel advances it, so a
// replayed graph needs nothing from the host.
layout(std430, binding = 0) buffer Param { float p[]; };
layout(std430, binding = 1) readonly buffer Grad { float g[]; };
layout(std430, binding = 2) buffer State { float s[]; };
layout(std430, binding = 3) buffer Update { float y[]; };
layout(push_constant) uniform Push {
    uint rows, cols, factored;
    float lr, decay, clip, weightDecay, eps1;
} pc;

void main() {
    uint lid = gl_LocalInvocationID.x, nthreads = gl_WorkGroupSize.x;
    uint n = pc.rows * pc.cols;
    uint t = floatBitsToUint(s[0]);
    float beta = 1.0 - pow(float(t) + 1.0, -pc.decay);

    if (pc.factored != 0) {
        // v_row[r] = mean over columns, v_col[c] = mean over rows (state: [t, v_row..., v_col...]).
        for (uint r = lid; r < pc.rows; r += nthreads) {
            float acc = 0.0;
            for (uint c = 0; c < pc.cols; c++) { float gv = g[r * pc.cols + c]; acc += gv * gv + pc.eps1; }
            s[1 + r] = beta * s[1 + r] + (1.0 - beta) * acc / float(pc.cols);
        }
        for (uint c = lid; c < pc.cols; c += nthreads) {
            float acc = 0.0;
            for (uint r = 0; r < pc.rows; r++) { float gv = g[r * pc.cols + c]; acc += gv * gv + pc.eps1; }
            s[1 + pc.rows + c] = beta * s[1 + pc.rows + c] + (1.0 - beta) * acc / float(pc.rows);
        }
        barrier();
        // The factor along the smaller dim is normalised by its mean (optax's factored_dims:
        // d0 = largest dim, ties go to the columns).
        bool colsLargest = pc.cols >= pc.rows;
        uint smallLen = colsLargest ? pc.rows : pc.cols;
        uint smallBase = colsLargest ? 1 : 1 + pc.rows;
        float acc = 0.0;
        for (uint i = lid; i < smallLen; i += nthreads) acc += s[smallBase + i];
        float smallMean = workgroupSum(acc) / float(smallLen);
        float sq = 0.0;
        for (uint i = lid; i < n; i += nthreads) {
            uint r = i / pc.cols, c = i % pc.cols;
            float vr = s[1 + r], vc = s[1 + pc.rows + c];
            float f = colsLargest ? inversesqrt(vr / smallMean) * inversesqrt(vc)
                                  : inversesqrt(vc / smallMean) * inversesqrt(vr);
            float u = g[i] * f;
            y[i] = u;
            sq += u * u;
        }
        float rms = sqrt(workgroupSum(sq) / float(n));
        float scale = pc.lr / max(1.0, rms / pc.clip);
        for (uint i = lid; i < n; i += nthreads) p[i] = (1.0 - pc.weightDecay) * p[i] - scale * y[i];
    } else {
        float sq = 0.0;
        for (uint i = lid; i < n; i += nthreads) {
            float gv = g[i];
            float v = beta * s[1 + i] + (1.0 - beta) * (gv * gv + pc.eps1);
            s[1 + i] = v;
            float u = gv * inversesqrt(v);
            y[i] = u;
            sq += u * u;
        }
        float rms = sqrt(workgroupSum(sq) / float(n));
        float scale = pc.lr / max(1.0, rms / pc.clip);
        for (uint i = lid; i < n; i += nthreads) p[i] = (1.0 - pc.weightDecay) * p[i] - scale * y[i];
    }
    barrier();
    if (lid == 0) s[0] = uintBitsToFloat(t + 1);
}
