using System.Text;
using System.Text.Json;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;

namespace VkPrompt.Fuzz;

/// <summary>Seed inputs that no golden file holds, made as the real writers make them.</summary>
internal static class Seeds
{
    public const int CheckpointDModel = 8, CheckpointPromptLength = 4, CheckpointSeed = 42;

    /// <summary>Texts a loaded tokenizer encodes: special tokens and sentinels written literally,
    /// whitespace runs, characters outside any small vocabulary, a control character.</summary>
    public static readonly string[] Texts =
        ["Hello world.", "  leading,   runs of   spaces\tand\ttabs \n", "a <extra_id_7> b </s>", "<pad><unk></s><extra_id_0>",
         "unicode: é ü ß 日本語 🙂 \u0001", ""];

    /// <summary>A checkpoint as <c>TrainingDirectory.WriteCheckpoint</c> writes it for a
    /// [<see cref="CheckpointPromptLength"/>, <see cref="CheckpointDModel"/>] prompt.</summary>
    public static byte[] Checkpoint(Fixtures fx)
    {
        var prompt = Enumerable.Range(0, CheckpointPromptLength * CheckpointDModel).Select(i => 0.01f * i - 0.1f).ToArray();
        var state = new float[new AdafactorSettings().StateLength(CheckpointPromptLength, CheckpointDModel)];
        state[0] = 5;
        var dir = Directory.CreateTempSubdirectory("vkprompt-fuzz-seed-").FullName;
        try
        {
            var path = Path.Combine(dir, "c.safetensors");
            SafetensorsWriter.Write(path, [("prompt", [CheckpointPromptLength, CheckpointDModel], prompt), ("optimizer_state", [state.Length], state)],
                new Dictionary<string, string>
                {
                    ["best_metric"] = "0.75", ["best_loss"] = "1.25", ["best_step"] = "3", ["evaluations_since_best"] = "1",
                    ["step"] = "5", ["seed"] = "42", ["precision"] = WeightPrecision.Fp32.Name(),
                });
            return File.ReadAllBytes(path);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Lines of the official SuperGLUE files, one file per task (each read as every task).</summary>
    public static IEnumerable<byte[]> SuperGlueLines()
    {
        string[] files =
        [
            """{"question": "is the sky blue", "passage": "The sky is blue on a clear day.", "idx": 0, "label": true}""",
            """{"premise": "It rained.", "hypothesis": "The ground is wet.", "label": "entailment", "idx": 1}""" + "\n" +
            """{"premise": "It rained.", "hypothesis": "The ground is dry.", "label": "contradiction", "idx": 2}""",
            """{"premise": "Dogs bark.", "hypothesis": "Cats bark.", "label": "not_entailment", "idx": 3}""",
            """{"word": "bank", "sentence1": "The river bank.", "sentence2": "The bank lends money.", "idx": 4, "label": false, "start1": 10, "end1": 14, "start2": 4, "end2": 8}""",
            """{"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause", "idx": 5, "label": 0}""",
        ];
        return files.Select(f => Encoding.UTF8.GetBytes(f + "\n"));
    }

    /// <summary>tokenizer.json as HF's T5 converter lays out <paramref name="spm"/>: Precompiled
    /// normalizer, WhitespaceSplit and Metaspace, the Unigram vocabulary with 100 sentinels.</summary>
    public static byte[] TokenizerJson(SentencePieceModel spm)
    {
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            int size = spm.Pieces.Count;
            w.WriteStartObject();
            w.WriteStartArray("added_tokens");
            for (int id = 0; id < size + 100; id++)
            {
                string? content = id < size
                    ? spm.Pieces[id].Type is PieceType.Control or PieceType.Unknown ? spm.Pieces[id].Text : null
                    : $"<extra_id_{size + 99 - id}>";
                if (content is null)
                    continue;
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", content);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();

            w.WriteStartObject("normalizer");
            w.WriteString("type", "Precompiled");
            w.WriteString("precompiled_charsmap", Convert.ToBase64String(spm.NormalizerSpec.PrecompiledCharsmap));
            w.WriteEndObject();

            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("pretokenizers");
            w.WriteStartObject();
            w.WriteString("type", "WhitespaceSplit");
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "Metaspace");
            w.WriteString("replacement", "\u2581");
            w.WriteBoolean("add_prefix_space", true);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteStartObject("model");
            w.WriteString("type", "Unigram");
            w.WriteNumber("unk_id", spm.UnkId);
            w.WriteStartArray("vocab");
            foreach (var piece in spm.Pieces)
            {
                w.WriteStartArray();
                w.WriteStringValue(piece.Text);
                w.WriteNumberValue((double)piece.Score);
                w.WriteEndArray();
            }
            for (int n = 99; n >= 0; n--)
            {
                w.WriteStartArray();
                w.WriteStringValue($"<extra_id_{n}>");
                w.WriteNumberValue(0.0);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return stream.ToArray();
    }
}
