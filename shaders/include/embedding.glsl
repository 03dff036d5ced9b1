// Encoder (or decoder) input: y [batch, P + len, dim] with row (b, t) = prompts[promptIndex[b], t]
// for t < P, else table[ids[b, t - P]]. The table can be larger than maxStorageBufferRange, so it
// arrives in row chunks and the host dispatches once per chunk; each dispatch writes only the
// token rows whose id falls in its chunk. The dispatch with writeShared set also writes the prompt
// rows and zeros for ids outside the vocabulary, so every output element is written exactly once
// and a bad id never leaves stale memory behind.
// Shared by embedding.comp (fp32 table), embedding_half.comp (fp16 or bf16 table) and
// embedding_int8.comp (int8 table, its row scales at binding 5), which declare binding 0, the
// table chunk holding rows [firstRow, firstRow + rows), and
//   float loadTable(uint i, uint row)   element i of that chunk, which lies in its row `row`, as fp32.
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };         // [batch, len]
layout(std430, binding = 2) readonly buffer Prompts { float prompts[]; }; // [numPrompts, P, dim]
layout(std430, binding = 3) readonly buffer PromptIndex { int promptIndex[]; }; // [batch]
layout(std430, binding = 4) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push {
    uint batch; uint len; uint promptLen; uint dim;
    uint firstRow; uint rows; uint vocab; uint writeShared; uint numPrompts;
} pc;

void main() {
    uint seq = pc.promptLen + pc.len;
    GRID_STRIDE_LOOP(i, pc.batch * seq * pc.dim) {
        uint j = i % pc.dim;
        uint row = i / pc.dim;
        uint t = row % seq;
        uint b = row / seq;
        // Negative indices become huge as uint, and ids below firstRow wrap past rows, so one
        // unsigned comparison per bound check covers both ends.
        if (t < pc.promptLen) {
            if (pc.writeShared != 0u) {
                uint k = uint(promptIndex[b]);
                y[i] = k < pc.numPrompts ? prompts[(k * pc.promptLen + t) * pc.dim + j] : 0.0;
            }
        } else {
            uint id = uint(ids[b * pc.len + (t - pc.promptLen)]);
            uint local = id - pc.firstRow;
            if (local < pc.rows)
                y[i] = loadTable(local * pc.dim + j, local);
            else if (pc.writeShared != 0u && id >= pc.vocab)
                y[i] = 0.0;
        }
    }
}
