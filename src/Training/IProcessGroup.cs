namespace VkPrompt.Training;

/// <summary>
/// The processes one data-parallel run spans: this process alone (<see cref="SingleProcess"/>),
/// or the ranks of an MPI job. Only the few collectives prompt tuning needs: the prompt gradient
/// (100 x d_model floats) and a loss cross as whole arrays gathered in rank order, so every
/// process sums them in the same fixed order and holds the same bits (an all-reduce may sum in a
/// different order on each rank).
/// </summary>
internal interface IProcessGroup : IDisposable
{
    /// <summary>This process's index, from 0 to <see cref="Size"/> - 1; rank 0 alone writes outputs.</summary>
    int Rank { get; }
    /// <summary>How many processes take part.</summary>
    int Size { get; }

    /// <summary>Every process's <paramref name="mine"/> (the same length on each), concatenated in
    /// rank order into <paramref name="all"/> (Size x that length), on every process.</summary>
    void AllGather(ReadOnlySpan<double> mine, Span<double> all);

    /// <summary>Rank <paramref name="root"/>'s <paramref name="data"/> on every process.</summary>
    void Broadcast(Span<float> data, int root);

    /// <summary>Whether any process says true: how the ranks agree to stop (Ctrl-C, early
    /// stopping, an error) at the same step instead of one waiting forever for the others.</summary>
    bool Any(bool mine);
}

/// <summary>The group of this process alone: every collective is a copy.</summary>
internal sealed class SingleProcess : IProcessGroup
{
    public int Rank => 0;
    public int Size => 1;
    public void AllGather(ReadOnlySpan<double> mine, Span<double> all) => mine.CopyTo(all);
    public void Broadcast(Span<float> data, int root) => ArgumentOutOfRangeException.ThrowIfNotEqual(root, 0);
    public bool Any(bool mine) => mine;
    public void Dispose() { }
}
