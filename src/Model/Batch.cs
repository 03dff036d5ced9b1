namespace VkPrompt.Model;

/// <summary>One tokenized example: encoder input ids and target ids, both ending in eos.</summary>
public sealed record EncodedExample(int[] InputIds, int[] TargetIds);

/// <summary>
/// Host-side tensors for one batch, laid out for a <see cref="BatchShape"/>: ids padded with 0,
/// the encoder mask with the prompt's ones in front, decoder inputs = targets shifted right
/// behind decoder_start_token_id, and targets with -1 where the loss must ignore padding.
/// </summary>
internal sealed class HostBatch
{
    /// <summary>Rows [Start, Start + Count) of <paramref name="rows"/> taken by part
    /// <paramref name="part"/> of <paramref name="parts"/> (the workers of data parallel, the
    /// micro-batches of a pipeline): as even as possible, the first rows mod parts parts one more
    /// each. A part may get none.</summary>
    public static (int Start, int Count) Share(int rows, int parts, int part)
    {
        int each = rows / parts, extra = rows % parts;
        return (part * each + Math.Min(part, extra), each + (part < extra ? 1 : 0));
    }

    public required BatchShape Shape { get; init; }
    public required int[] InputIds { get; init; }
    public required int[] EncoderMask { get; init; }
    public required int[] DecoderIds { get; init; }
    public required int[] Targets { get; init; }
    public required int[] PromptIndex { get; init; }
    public required int RealExamples { get; init; }
    public int TargetTokens => Targets.Count(t => t >= 0);

    /// <summary>Lengths round up to this so batches of similar length share one recorded graph;
    /// the extra positions are masked keys and ignored targets, which change no result.</summary>
    public const int LengthQuantum = 8;

    public static int Round(int n, int quantum = LengthQuantum) => (int)Padded(n, quantum);

    /// <summary><see cref="Round"/> in longs, for lengths as asked for, which may be near int's
    /// range: what a size check pads before the shape is made of ints.</summary>
    public static long Padded(long n, int quantum = LengthQuantum) => Math.Max(quantum, (n + quantum - 1) / quantum * quantum);

    /// <summary>Indices of <paramref name="lengths"/>, shortest first (ties in order): batches cut
    /// from it pad far less than batches in file order, and lengths that round alike fall into
    /// consecutive batches, which replay one recording. For work whose results go back by index.</summary>
    public static int[] ShortestFirst(IReadOnlyList<int> lengths) => Enumerable.Range(0, lengths.Count).OrderBy(i => lengths[i]).ToArray();

    /// <summary>Pads and lays out <paramref name="examples"/> as the host-side inputs of one pass.</summary>
    /// <param name="examples">the batch's examples, encoded.</param>
    /// <param name="promptLength">rows the prompts take before each input (0: no prompt).</param>
    /// <param name="numPrompts">prompts in the set the examples pick from.</param>
    /// <param name="promptIndex">the prompt each example takes; null: prompt 0.</param>
    /// <param name="batchSize">rows of the shape; examples beyond the list are padding rows whose
    /// targets are all ignored (a last, short batch replays the full-size graph).</param>
    /// <param name="decoderStart">the token the decoder input starts with.</param>
    /// <param name="targetLength">the target length of the shape; null: the longest target, rounded.</param>
    /// <param name="promptLengths">each prompt's own length, where prompts of several lengths share
    /// the <paramref name="promptLength"/> rows (<see cref="PromptSet"/>): prompt k fills the last
    /// promptLengths[k] of them and the rows before it are masked. Every real position then keeps
    /// its distance to every other, and T5's position bias depends on distances alone, so an
    /// example scores as it would with its prompt alone. Null: every prompt fills all rows.</param>
    public static HostBatch Build(IReadOnlyList<EncodedExample> examples, int promptLength, int numPrompts = 1,
                                  IReadOnlyList<int>? promptIndex = null, int? batchSize = null, int decoderStart = 0, int? targetLength = null,
                                  IReadOnlyList<int>? promptLengths = null)
    {
        int b = batchSize ?? examples.Count;
        if (examples.Count == 0 || examples.Count > b) throw new ArgumentException("a batch needs 1..batchSize examples");
        if (promptLengths is not null && (promptLengths.Count != numPrompts || promptLengths.Any(l => l is < 1 || l > promptLength)))
            throw new ArgumentException($"promptLengths needs one length in 1..{promptLength} per prompt ({numPrompts})");
        int lin = Round(examples.Max(e => e.InputIds.Length));
        int ld = targetLength ?? Round(examples.Max(e => e.TargetIds.Length));
        if (examples.Any(e => e.TargetIds.Length > ld)) throw new ArgumentException($"a target is longer than the batch's {ld} positions");
        var shape = new BatchShape(b, lin, ld, promptLength, numPrompts);
        int le = shape.EncoderLength;
        var ids = new int[b * lin];
        var mask = new int[b * le];
        var dec = new int[b * ld];
        var tgt = new int[b * ld];
        var pidx = new int[b];
        Array.Fill(tgt, -1);
        for (int i = 0; i < b; i++)
        {
            var e = i < examples.Count ? examples[i] : null;
            if (e is null)
            {
                PaddingRow(mask, i, shape);
                continue;
            }
            pidx[i] = promptIndex?[i] ?? 0;
            int firstPromptRow = promptLength - (promptLengths?[pidx[i]] ?? promptLength);
            for (int t = firstPromptRow; t < promptLength; t++) mask[i * le + t] = 1;
            for (int t = 0; t < e.InputIds.Length; t++)
            {
                ids[i * lin + t] = e.InputIds[t];
                mask[i * le + promptLength + t] = 1;
            }
            dec[i * ld] = decoderStart;
            for (int t = 0; t < e.TargetIds.Length; t++)
            {
                tgt[i * ld + t] = e.TargetIds[t];
                if (t + 1 < ld) dec[i * ld + t + 1] = e.TargetIds[t];
            }
        }
        return new HostBatch { Shape = shape, InputIds = ids, EncoderMask = mask, DecoderIds = dec, Targets = tgt, PromptIndex = pidx, RealExamples = examples.Count };
    }

    // Padding rows still see one real key (the first position) so no softmax row is empty.
    static void PaddingRow(int[] mask, int row, BatchShape shape)
    {
        int le = shape.EncoderLength;
        for (int t = 0; t < shape.PromptLength; t++) mask[row * le + t] = 1;
        mask[row * le] = 1;
    }

    /// <summary>Rows <paramref name="first"/>..<paramref name="first"/>+<paramref name="count"/>-1
    /// of this batch as a batch of <paramref name="batchSize"/> rows of the same lengths, the rows
    /// past them padding: a micro-batch of a pipeline, which computes on each row what the whole
    /// batch would.</summary>
    public HostBatch Rows(int first, int count, int batchSize)
    {
        if (first < 0 || count < 0 || first + count > Shape.Batch || count > batchSize)
            throw new ArgumentOutOfRangeException(nameof(count), $"rows {first}..{first + count - 1} of a batch of {Shape.Batch} in {batchSize}");
        var shape = Shape with { Batch = batchSize };
        int[] Slice(int[] all, int perRow)
        {
            var part = new int[batchSize * perRow];
            Array.Copy(all, first * perRow, part, 0, count * perRow);
            return part;
        }
        var mask = Slice(EncoderMask, shape.EncoderLength);
        var tgt = Slice(Targets, shape.TargetLength);
        for (int i = count; i < batchSize; i++)
        {
            PaddingRow(mask, i, shape);
            Array.Fill(tgt, -1, i * shape.TargetLength, shape.TargetLength);
        }
        return new HostBatch
        {
            Shape = shape, InputIds = Slice(InputIds, shape.InputLength), EncoderMask = mask, DecoderIds = Slice(DecoderIds, shape.TargetLength),
            Targets = tgt, PromptIndex = Slice(PromptIndex, 1), RealExamples = Math.Clamp(RealExamples - first, 0, count),
        };
    }
}
