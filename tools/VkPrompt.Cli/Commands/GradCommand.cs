using System.CommandLine;
using System.Globalization;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

internal static class GradCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var prompt = ModelOptions.Prompt(required: true);
        var data = ModelOptions.Data(required: true);
        var output = new Option<string>("--output", "-o") { HelpName = "FILE", Description = "Where to write the gradient (.safetensors, key prompt_gradient, float32 [P, d_model]).", Required = true };
        var session = new SessionArgs();
        var recompute = new Option<bool>("--recompute") { Description = "Recompute each block's activations in the backward pass instead of storing them (less memory, ~1.3x the time)." };
        var distributed = Distributed.Option();
        var cmd = new Command("grad", "Loss and prompt gradient of the whole file taken as one batch (the mean over every target token of the batch, as docs/numerics.md states). Prints {\"loss\": x}.")
        {
            model, prompt, data, output,
        };
        Cli.AddOptions(cmd, [.. session.Options, recompute, distributed]);
        cmd.SetAction(parse => Distributed.Run(parse, distributed, group =>
        {
            string outputPath = ModelOptions.OutputFile(output.Name, parse.GetValue(output)!, OutputKind.Gradient,
                (model.Name, parse.GetValue(model)), (prompt.Name, parse.GetValue(prompt)), (data.Name, parse.GetValue(data)));
            var settings = session.Read(parse);
            var examples = DataFile.Read(parse.GetValue(data)!);
            PipelineArgs.RefuseWithMpi(parse, settings.Pipeline, distributed);
            using var s = new ModelSession(parse.GetValue(model)!, settings with { Devices = Distributed.Devices(settings.Devices, group) }, Distributed.Log(parse, group));
            s.Model.ProcessGroup = group;
            var promptData = s.Model.LoadPrompt(parse.GetValue(prompt)!);
            var enc = s.Model.Encoder(int.MaxValue, int.MaxValue);
            var (loss, grad) = s.Model.Gradient(examples.Select(enc.Encode).ToList(), promptData,
                parse.GetValue(recompute) ? ActivationMode.Recompute : ActivationMode.Store);
            // Every rank holds the combined gradient; rank 0 writes it.
            if (group.Rank != 0) return Cli.Ok;
            SafetensorsWriter.Write(outputPath, [("prompt_gradient", [promptData.Length / s.Model.DModel, s.Model.DModel], grad)], new Dictionary<string, string> { ["format"] = "pt" });
            Cli.Out(parse).WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"loss\": {loss:R}}}"));
            return Cli.Ok;
        }));
        return cmd;
    }
}
