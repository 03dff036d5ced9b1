#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "flash_attention.glsl"

// Backward of flash_attention.comp, from the output gradient dO and the forward's o and
// logsumexp, recomputing the probabilities block by block instead of reading them:
//   P[i,j] = exp(score[i,j] - lse[i])            (0 for masked keys and fully masked queries)
//   dP[i,j] = keep[i,j]·scale · dO[i]·v[j]        (the gradient of the undropped P)
//   dS[i,j] = P[i,j]·(dP[i,j] - Δ[i]),  Δ[i] = dO[i]·o[i] = Σ_j P[i,j]·dP[i,j]
//   dq[i] = Σ_j dS[i,j]·k[j],  dk[j] = Σ_i dS[i,j]·q[i],  dv[j] = Σ_i keep[i,j]·scale·P[i,j]·dO[i]
// Two passes, so that every sum belongs to one invocation and no float is added atomically:
// PASS 0 gives each invocation a query and streams over blocks of keys and values (dq);
// PASS 1 gives each invocation a key and streams over blocks of queries and output gradients
// (dk, dv). Both recompute Δ from dO and o with the same arithmetic, so they need no scratch
// buffer and do not depend on each other.
layout(constant_id = 4) const uint PASS = 0;

layout(std430, binding = 4) readonly buffer Q { float q[]; };
layout(std430, binding = 5) readonly buffer K { float k[]; };
layout(std430, binding = 6) readonly buffer V { float v[]; };
layout(std430, binding = 7) readonly buffer O { float o[]; };
layout(std430, binding = 8) readonly buffer LogSumExp { float lse[]; };
layout(std430, binding = 9) readonly buffer DO { float dO[]; };
// dq in pass 0, dk in pass 1.
layout(std430, binding = 10) writeonly buffer DQK { float dqk[]; };
// dv in pass 1; pass 0 binds dq here too and writes only through binding 10.
layout(std430, binding = 11) writeonly buffer DV { float dv[]; };

// Pass 0 stages keys and values, pass 1 queries and output gradients with their lse and Δ.
shared float sa[STAGED ? BLOCK * D : 1];
shared float sb[STAGED ? BLOCK * D : 1];
shared float sLse[STAGED && PASS == 1 ? BLOCK : 1];
shared float sDelta[STAGED && PASS == 1 ? BLOCK : 1];

// Element d of row r of the block whose first row starts at base: keys and values in pass 0,
// queries and output gradients in pass 1.
float aAt(uint base, uint r, uint d) {
    if (STAGED) return sa[r * D + d];
    const uint at = base + r * rowStride() + d;
    return PASS == 0 ? k[at] : q[at];
}
float bAt(uint base, uint r, uint d) {
    if (STAGED) return sb[r * D + d];
    const uint at = base + r * rowStride() + d;
    return PASS == 0 ? v[at] : dO[at];
}

// Δ of query i: dO[i]·o[i], read from memory by both passes so they agree on it exactly.
float delta(uint b, uint h, uint i) {
    const uint at = rowBase(b, pc.queryRows, i, h);
    float s = 0.0;
    FOR_D(d) s = fma(dO[at + d], o[at + d], s);
    return s;
}

void queryGradients() {
    const uint rowsPerGroup = gl_WorkGroupSize.x;
    const uint t = gl_LocalInvocationID.x;
    const uint i0 = gl_WorkGroupID.x * rowsPerGroup;
    // As in the forward: invocations past the last query work on it and store nothing.
    const uint i = min(i0 + t, pc.queryLength - 1);
    const uint keyEnd = visibleKeys(min(i0 + rowsPerGroup, pc.queryLength));

    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        float qi[D], gi[D], acc[D];
        const uint qBase = rowBase(b, pc.queryRows, i, h);
        FOR_D(d) {
            qi[d] = q[qBase + d];
            gi[d] = dO[qBase + d];
            acc[d] = 0.0;
        }
        const float di = delta(b, h, i);
        const float lsei = lse[bh * pc.queryLength + i];

        for (uint j0 = 0; j0 < keyEnd; j0 += BLOCK) {
            const uint n = min(BLOCK, keyEnd - j0);
            const uint kBase = rowBase(b, pc.keyRows, j0, h);
            if (STAGED) {
                for (uint e = t; e < n * D; e += rowsPerGroup) {
                    const uint at = kBase + e / D * rowStride() + e % D;
                    sa[e] = k[at];
                    sb[e] = v[at];
                }
                barrier();
            }
            for (uint jj = 0; jj < BLOCK; jj++) {
                if (jj >= n) break;
                float dot = 0.0;
                FOR_D(d) dot = fma(qi[d], aAt(kBase, jj, d), dot);
                const float p = exp(score(dot, b, h, i, j0 + jj) - lsei);
                // Masked keys (and underflowed ones) contribute exactly nothing.
                if (p == 0.0) continue;
                float dp = 0.0;
                if (kept(b, h, i, j0 + jj))
                    FOR_D(d) dp = fma(gi[d], bAt(kBase, jj, d), dp);
                const float ds = p * (dp * pc.scale - di);
                FOR_D(d) acc[d] = fma(ds, aAt(kBase, jj, d), acc[d]);
            }
            if (STAGED) barrier();
        }

        if (i0 + t < pc.queryLength)
            FOR_D(d) dqk[qBase + d] = acc[d];
    }
}

void keyGradients() {
    const uint rowsPerGroup = gl_WorkGroupSize.x;
    const uint t = gl_LocalInvocationID.x;
    const uint j0 = gl_WorkGroupID.x * rowsPerGroup;
    const uint j = min(j0 + t, pc.keyLength - 1);
    const uint queryStart = firstQuerySeeing(j0);

    for (uint bh = gl_WorkGroupID.y; bh < pc.batch * pc.heads; bh += gl_NumWorkGroups.y) {
        const uint b = bh / pc.heads, h = bh % pc.heads;
        float kj[D], vj[D], dk[D], dvj[D];
        const uint kBase = rowBase(b, pc.keyRows, j, h);
        FOR_D(d) {
            kj[d] = k[kBase + d];
            vj[d] = v[kBase + d];
            dk[d] = 0.0;
            dvj[d] = 0.0;
        }

        for (uint r0 = queryStart; r0 < pc.queryLength; r0 += BLOCK) {
            const uint n = min(BLOCK, pc.queryLength - r0);
            const uint qBase = rowBase(b, pc.queryRows, r0, h);
            if (STAGED) {
                for (uint e = t; e < n * D; e += rowsPerGroup) {
                    const uint at = qBase + e / D * rowStride() + e % D;
                    sa[e] = q[at];
                    sb[e] = dO[at];
                }
                for (uint r = t; r < n; r += rowsPerGroup) {
                    sDelta[r] = delta(b, h, r0 + r);
                    sLse[r] = lse[bh * pc.queryLength + r0 + r];
                }
                barrier();
            }
            for (uint ii = 0; ii < BLOCK; ii++) {
                if (ii >= n) break;
                const uint i = r0 + ii;
                float dot = 0.0;
                FOR_D(d) dot = fma(aAt(qBase, ii, d), kj[d], dot);
                const float lsei = STAGED ? sLse[ii] : lse[bh * pc.queryLength + i];
                const float p = exp(score(dot, b, h, i, j) - lsei);
                if (p == 0.0) continue;
                float dp = 0.0, pd = 0.0;
                if (kept(b, h, i, j)) {
                    FOR_D(d) dp = fma(bAt(qBase, ii, d), vj[d], dp);
                    pd = p * pc.scale;
                }
                const float ds = p * (dp * pc.scale - (STAGED ? sDelta[ii] : delta(b, h, i)));
                FOR_D(d) {
                    dvj[d] = fma(pd, bAt(qBase, ii, d), dvj[d]);
                    dk[d] = fma(ds, aAt(qBase, ii, d), dk[d]);
                }
            }
            if (STAGED) barrier();
        }

        if (j0 + t < pc.keyLength)
            FOR_D(d) {
                dqk[kBase + d] = dk[d];
                dv[kBase + d] = dvj[d];
            }
    }
}

void main() {
    if (PASS == 0) queryGradients();
    else keyGradients();
}
