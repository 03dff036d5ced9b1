using Silk.NET.Vulkan;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Examples;

/// <summary>
/// README.md's C# samples, compiled here against the public API alone (no InternalsVisibleTo
/// reaches this assembly) and run by tests/ReadmeExamplesTests.cs. Each ```csharp block of the
/// README is the text between a "// README: NAME" line and the next "// README end" line here,
/// which that test checks both ways, so a sample that stops compiling or computing the golden
/// values fails the build or the suite instead of drifting. The parameters are what a reader's
/// program already has (its Vulkan handles, its paths).
/// </summary>
public static class ReadmeExamples
{
    public static ScoreResult[] ScoreOnHostDevice(nint getInstanceProcAddr, Instance instance, PhysicalDevice physicalDevice, Device device, uint queueFamily,
                                                  object queueLock, string modelDir, string dataFile, string promptFile)
    {
        // README: host-device
        var hostDevice = new HostDevice   // the host's own handles, declared as it created them
        {
            GetInstanceProcAddr = getInstanceProcAddr, Instance = instance, PhysicalDevice = physicalDevice, Device = device,
            ApiVersion = Vk.Version12, QueueFamily = queueFamily, QueueIndex = 0,
            EnabledFeatures = new HostFeatures { TimelineSemaphore = true },   // what its VkDeviceCreateInfo enabled
            QueueLock = new QueueLock(() => Monitor.Enter(queueLock), () => Monitor.Exit(queueLock)),   // held around each vkQueueSubmit
        };
        using var ctx = GpuContext.Adopt(hostDevice);   // refused, naming it, where something needed is missing
        using var model = PromptModel.Open(modelDir, ctx);   // borrows ctx: disposing the model leaves it
        var encoder = model.Encoder();
        var examples = DataFile.Read(dataFile).Select(encoder.Encode).ToList();   // {"input": ..., "target": ...} lines
        var prompts = model.Prompts([model.LoadPrompt(promptFile)]);   // a PEFT adapter, .safetensors or T5X .npy
        ScoreResult[] scores = model.Score(examples, prompts);   // log P(target | prompt, input), in input order
        // README end
        return scores;
    }

    public static (List<double> Losses, float[] Prompt) TrainBetweenFrames(GpuContext ctx, string modelDir, string dataFile, string promptFile, Func<bool> renderFrame)
    {
        // README: host-frames
        using var model = PromptModel.Open(modelDir, ctx);
        var examples = DataFile.Read(dataFile).Select(model.Encoder().Encode).ToList();
        using var trainer = model.Trainer(model.LoadPrompt(promptFile));   // Adafactor with the paper's settings
        var losses = new List<double>();
        var step = trainer.BeginStep(examples[0..2]);   // uploads the batch; submits nothing
        while (losses.Count < 3 && renderFrame())   // the host's frame: its own submits, under its queue lock
        {
            if (!step.IsSubmitted) step.Advance(TimeSpan.FromMilliseconds(2));   // the next ops that fit ~2 ms of GPU time
            else if (step.IsComplete)   // polls the step's ticket; never blocks
            {
                losses.Add(step.Loss);
                int next = 2 * losses.Count;
                if (next + 2 <= examples.Count) step = trainer.BeginStep(examples[next..(next + 2)]);
            }
        }
        // README end
        return (losses, trainer.Prompt());
    }

    public static (ScoreResult[] Scores, int[] Labels) SeveralTasksInOneBatch(GpuOptions options, string modelDir, string rtePrompt, string boolqPrompt)
    {
        // README: several-tasks
        using var ctx = GpuContext.Create(options);   // e.g. new GpuOptions { Device = "rtx" }: a value, never the environment
        using var model = PromptModel.Open(modelDir, ctx, WeightPrecision.Bf16);
        var encoder = model.Encoder();
        var examples = new[]
        {
            encoder.Encode("rte sentence1: The license grants permission to copy and distribute. sentence2: Copying is allowed.", "entailment"),
            encoder.Encode("boolq question: is redistribution permitted? passage: Redistribution is permitted.", "True"),
        };
        var prompts = model.Prompts([model.LoadPrompt(rtePrompt), model.LoadPrompt(boolqPrompt)]);   // lengths may differ
        ScoreResult[] scores = model.Score(examples, prompts, promptIndex: [0, 1]);   // each example with its task's prompt
        int[] labels = model.Classify([examples[0].InputIds], ["entailment", "not_entailment"], prompts)[0];   // [prompt][input]
        // README end
        return (scores, labels);
    }

    public static (List<double> Losses, TrainingResult Result) TrainOnCpu(string modelDir, string trainFile, string initialPrompt, string outputDirectory)
    {
        // README: train
        using var model = PromptModel.OpenOnCpu(modelDir);   // the C# reference backend: no GPU, slow, exact
        var options = new TrainOptions   // Adafactor as the paper: lr 0.3, decay rate 0.8, clipping 1, weight decay 1e-5
        {
            Steps = 3, BatchSize = 2, Shuffle = false, Dropout = 0,
            Init = $"file:{initialPrompt}",   // or "class" (the paper's), "vocab", "random", "text:..."
        };
        var run = model.Train(DataFile.Read(trainFile), validation: null, options, outputDirectory);
        var losses = new List<double>();
        run.OnStep = report => losses.Add(report.Loss);
        TrainingResult result = run.Run();   // outputDirectory: a PEFT adapter, a checkpoint to resume, metrics.jsonl
        // README end
        return (losses, result);
    }
}
