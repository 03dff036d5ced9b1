using System.CommandLine;
using System.Globalization;
using VkPrompt.Model;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

internal static class ClassifyCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var prompt = ModelOptions.Prompt();
        var data = ModelOptions.Data(required: true);
        var choices = new Option<string?>("--choices", "-c") { Description = "Comma-separated label words, e.g. \"entailment,not_entailment\". Default: the --task's labels." };
        var task = new Option<string?>("--task") { Description = "Read --data as official SuperGLUE JSONL of this task (boolq, cb, rte, wic, copa) with T5's formatting, as train --task does; labels are optional (the test split has none) and the task's label words are the choices." };
        var session = new SessionArgs();
        var batch = ModelOptions.BatchSize(8);
        var maxIn = ModelOptions.MaxInputLength();
        var cmd = new Command("classify", "Rank classification: for each input, print the choice whose text the model finds most likely; with targets in the data, also the accuracy.")
        {
            model, prompt, data, task, choices,
        };
        Cli.AddOptions(cmd, [.. session.Options, batch, maxIn]);
        cmd.SetAction(parse =>
        {
            var superGlue = parse.GetValue(task) is string name ? SuperGlue.Get(name) : null;
            var labels = parse.GetValue(choices) is string given ? Choices.Parse(given)
                : superGlue?.Labels.ToList() ?? throw new UsageException("give --choices, or --task for a SuperGLUE task's labels");
            var examples = superGlue is null ? DataFile.Read(parse.GetValue(data)!, requireTargets: false)
                                             : SuperGlue.Read(parse.GetValue(data)!, superGlue, requireLabels: false);
            using var s = new ModelSession(parse.GetValue(model)!, session.Read(parse), ModelOptions.Log(parse));
            var promptData = parse.GetValue(prompt) is string path ? s.Model.Prompts([s.Model.LoadPrompt(path)]) : null;
            var enc = s.Model.Encoder(ModelOptions.Positive(parse, maxIn), int.MaxValue);
            var inputs = examples.Select(e => enc.Encode(e.Input, "").InputIds).ToList();
            Cli.WarnTruncation(parse, enc);
            var pred = s.Model.Classify(inputs, labels, promptData, ModelOptions.Positive(parse, batch))[0];
            var output = Cli.Out(parse);
            foreach (var c in pred) output.WriteLine(labels[c]);
            if (examples.All(e => e.Target is not null))
            {
                var gold = examples.Select(e => labels.IndexOf(e.Target!)).ToList();
                if (gold.IndexOf(-1) is int outside and >= 0)
                    parse.InvocationConfiguration.Error.WriteLine(
                        $"warning: {gold.Count(g => g < 0)} target(s) are none of the choices (example {outside + 1}: '{examples[outside].Target}'); the accuracy counts them wrong");
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"accuracy: {RankClassifier.Accuracy(pred, gold):F4} ({pred.Zip(gold).Count(x => x.First == x.Second)}/{gold.Count})"));
            }
            return Cli.Ok;
        });
        return cmd;
    }
}

internal static class Choices
{
    public static List<string> Parse(string text)
    {
        var list = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();
        if (list.Count < 2) throw new UsageException("--choices needs at least two comma-separated labels");
        if (list.Distinct().Count() != list.Count) throw new UsageException("--choices lists a label twice");
        return list;
    }
}
