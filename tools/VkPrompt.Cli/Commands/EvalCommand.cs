using System.CommandLine;
using System.Globalization;
using VkPrompt.Model;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

internal static class EvalCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var prompts = new Option<string[]>("--prompt", "-p")
        {
            HelpName = "PATH",
            Description = "A trained prompt (PEFT adapter dir, .safetensors or .npy). Repeat for an ensemble: all prompts run in one batch over the frozen model and vote; their lengths may differ.",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var data = ModelOptions.Data(required: true);
        var task = new Option<string?>("--task") { Description = "Read --data as official SuperGLUE JSONL of this task (boolq, cb, rte, wic, copa) with T5's formatting and label words, as train --task does; its labels are the choices." };
        var choices = new Option<string?>("--choices", "-c") { Description = "Comma-separated labels for rank classification. Default: the --task's labels, else the data's targets when they form a small label set." };
        var session = new SessionArgs();
        var batch = ModelOptions.BatchSize(16);
        var maxIn = ModelOptions.MaxInputLength();
        var cmd = new Command("eval", "Accuracy of one or more prompts by rank classification (with --task cb also macro-F1, SuperGLUE's metric for CB), and with several prompts the paper's ensemble (majority vote), reported beside the individual scores.")
        {
            model, prompts, data, task, choices,
        };
        Cli.AddOptions(cmd, [.. session.Options, batch, maxIn]);
        cmd.SetAction(parse =>
        {
            string dataPath = parse.GetValue(data)!;
            var superGlue = parse.GetValue(task) is string name ? SuperGlue.Get(name) : null;
            var examples = superGlue is null ? DataFile.Read(dataPath) : SuperGlue.Read(dataPath, superGlue);
            var labels = parse.GetValue(choices) is string c ? Choices.Parse(c) : superGlue?.Labels.ToList() ?? RankClassifier.LabelSet(examples)
                ?? throw new UsageException("the targets do not form a small label set; pass --choices");
            int unknown = examples.FindIndex(e => !labels.Contains(e.Target!));
            if (unknown >= 0)
                throw new UsageException($"{dataPath}: example {unknown + 1}: target '{examples[unknown].Target}' is not one of the choices ({string.Join(", ", labels)})");
            var paths = parse.GetValue(prompts)!;
            using var s = new ModelSession(parse.GetValue(model)!, session.Read(parse), ModelOptions.Log(parse));
            var ensemble = s.Model.Prompts(paths.Select(s.Model.LoadPrompt).ToList());
            var enc = s.Model.Encoder(ModelOptions.Positive(parse, maxIn), int.MaxValue);
            var inputs = examples.Select(e => enc.Encode(e.Input, "").InputIds).ToList();
            Cli.WarnTruncation(parse, enc);
            var pred = s.Model.Classify(inputs, labels, ensemble, ModelOptions.Positive(parse, batch));
            var gold = examples.Select(e => labels.IndexOf(e.Target!)).ToList();
            var output = Cli.Out(parse);
            string Metrics(int[] predicted) => string.Create(CultureInfo.InvariantCulture, $"accuracy {RankClassifier.Accuracy(predicted, gold):F4}") +
                (superGlue?.MacroF1 == true ? string.Create(CultureInfo.InvariantCulture, $", macro-F1 {RankClassifier.MacroF1(predicted, gold, labels.Count):F4}") : "");
            for (int p = 0; p < paths.Length; p++)
                output.WriteLine($"{paths[p]}: {Metrics(pred[p])}");
            if (paths.Length > 1)
                output.WriteLine($"ensemble of {paths.Length} (majority vote): {Metrics(RankClassifier.MajorityVote(pred, labels.Count))}");
            return Cli.Ok;
        });
        return cmd;
    }
}
