using VkPrompt.Model;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>train/eval --task: official SuperGLUE JSONL lines read as T5 formats them for the
/// prompt-tuning paper (t5.data.preprocessors.glue, features sorted by name unless glue_utils
/// lists them, then the task name removed as prompt-tuning's "taskless" tasks do).</summary>
public sealed class SuperGlueTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    List<Example> Read(string task, params string[] lines)
    {
        var path = dir.File(task + ".jsonl");
        File.WriteAllLines(path, lines);
        return SuperGlue.Read(path, SuperGlue.Get(task));
    }

    public static TheoryData<string, string, string, string> Lines() => new()
    {
        { "boolq", """{"question": "is it wet", "passage": "It rains.", "idx": 0, "label": true}""", "passage: It rains. question: is it wet", "True" },
        { "cb", """{"premise": "P.", "hypothesis": "H.", "label": "neutral", "idx": 3}""", "hypothesis: H. premise: P.", "neutral" },
        { "rte", """{"premise": "P.", "hypothesis": "H.", "label": "not_entailment", "idx": 1}""", "hypothesis: H. premise: P.", "not_entailment" },
        { "rte", """{"premise": "P.", "hypothesis": "H.", "label": 0, "idx": 1}""", "hypothesis: H. premise: P.", "entailment" },
        { "wic", """{"word": "bank", "sentence1": "A bank.", "sentence2": "The bank.", "idx": 0, "label": false, "start1": 2, "end1": 6, "start2": 4, "end2": 8, "version": 1.1}""",
          "sentence1: A bank. sentence2: The bank. word: bank", "False" },
        { "copa", """{"premise": "It fell.", "choice1": "A.", "choice2": "B.", "question": "cause", "label": 1, "idx": 0}""",
          "choice1: A. choice2: B. premise: It fell. question: cause", "choice2" },
    };

    [Theory, MemberData(nameof(Lines))]
    public void ALineReadsAsT5FormatsIt(string task, string line, string input, string target)
    {
        var e = Assert.Single(Read(task, line));
        Assert.Equal(input, e.Input);
        Assert.Equal(target, e.Target);
    }

    [Theory]
    [InlineData("""{"premise": "P.", "hypothesis": "H.", "idx": 0}""", "line 1: no \"label\" (SuperGLUE's test files have none; train and evaluate on the train and val files)")]
    [InlineData("""{"premise": "P.", "hypothesis": "H.", "label": 2}""", "line 1: label 2 is not one of entailment, not_entailment")]
    [InlineData("""{"premise": "P.", "label": 0}""", "line 1: missing field \"hypothesis\" of a rte example")]
    [InlineData("""{"premise": "P.", "hypothesis": "H.", "label": 1.5}""", "line 1: label 1.5 is not one of entailment, not_entailment")]
    [InlineData("""["P.", "H."]""", "line 1: expected a JSON object")]
    // Issue 21 finding 7: these were formatted into the input as JSON text, or an internal error.
    [InlineData("""{"premise": ["P."], "hypothesis": "H.", "label": 0}""", "line 1: field \"premise\" is [\"P.\"]; a rte feature is text")]
    [InlineData("""{"premise": "P.", "hypothesis": null, "label": 0}""", "line 1: field \"hypothesis\" is null; a rte feature is text")]
    [InlineData("""{"premise": "P.", "hypothesis": "H.", "label": 99999999999}""", "line 1: label 99999999999 is not one of entailment, not_entailment")]
    [InlineData("""{"premise": "P.", "hypothesis": "H.", "label": [0]}""", "line 1: label [0] is not one of entailment, not_entailment")]
    [InlineData("""{"premise": "P.\ud800", "hypothesis": "H.", "label": 0}""", "line 1: Cannot read incomplete UTF-16 JSON text as string with missing low surrogate")]
    public void ALineThatCannotBeTrainedOnIsAnErrorNamingIt(string line, string message)
    {
        var e = Assert.Throws<ModelFormatException>(() => Read("rte", line));
        Assert.EndsWith(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ATestSplitReadsWithoutTargetsWhereLabelsAreNotRequired()
    {
        var path = dir.File("test.jsonl");
        File.WriteAllLines(path, ["""{"premise": "P.", "hypothesis": "H.", "idx": 0}"""]);
        var e = Assert.Single(SuperGlue.Read(path, SuperGlue.Get("rte"), requireLabels: false));
        Assert.Equal(("hypothesis: H. premise: P.", null), (e.Input, e.Target));
    }
}
