namespace VkPrompt.Model;

/// <summary>The shape one recorded pass is built for: batch size, padded input length (without
/// the prompt), padded target length, prompt length and how many distinct prompts share it.</summary>
internal readonly record struct BatchShape(int Batch, int InputLength, int TargetLength, int PromptLength, int NumPrompts = 1)
{
    public int EncoderLength => PromptLength + InputLength;
}
