using System.Runtime.InteropServices;
using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace VkPrompt.Runtime;

/// <summary>GPU time of one op of a profiled run. <paramref name="Phase"/> is the path of the
/// <see cref="CommandGraph.Phase"/> scopes the op was appended in ("backward/recompute"), or "".</summary>
internal readonly record struct DispatchTiming(string Label, double Milliseconds, string Phase = "");

/// <summary>
/// A sequence of GPU work recorded once and replayed (Kompute's "sequence"): dispatches, fills
/// and copies are appended, the op list is sealed on the first submit, and every run replays it
/// unchanged, as one submit (<see cref="Submit"/>, <see cref="Run"/>) or in slices that fit a
/// GPU-time budget (<see cref="Advance"/>), each submit returning a <see cref="GpuTicket"/> at
/// once. Barriers are derived from each kernel's declared binding access: a global memory
/// barrier goes in only where an op reads or writes a buffer that an earlier op since the last
/// barrier wrote (RAW, WAW), or writes one it read (WAR).
/// </summary>
internal sealed unsafe class CommandGraph : IDisposable
{
    readonly GpuContext ctx;
    readonly List<Op> ops = new();
    readonly Dictionary<(int Start, int End, bool Stamps), CommandBuffer> segments = new();
    DescriptorPool descriptorPool;
    QueryPool queryPool;
    DescriptorSet[] descriptorSets = [];
    bool[] barrierBefore = [];
    double?[] estimateMs = [];
    // The time between op i-1's end and op i's start when the two ran in one slice: the barrier
    // and the binding between them, which the slice's time holds and the ops' own times do not.
    double?[] gapMs = [];
    double largestGapMs;
    bool sealedGraph, disposed;
    int next = -1;
    bool collected;
    GpuTicket last;
    readonly List<PendingSlice> runSlices = new();
    readonly List<SliceTiming> sliceTimings = new();
    readonly List<DispatchTiming> timings = new();
    readonly List<string> phases = new();
    string phasePath = "";

    readonly Dictionary<Type, object> kernelState = new();

    public GpuContext Context => ctx;
    public int DispatchCount => ops.Count(o => o.Kernel is not null);
    /// <summary>Ops appended so far: dispatches, fills and copies.</summary>
    public int OpCount => ops.Count;
    public bool Profiling { get; }

    /// <summary>Per-op GPU time of the last completed run, when profiling is on.</summary>
    public IReadOnlyList<DispatchTiming> Timings
    {
        get { CollectIfComplete(); return timings; }
    }

    public CommandGraph(GpuContext ctx, bool? profiling = null)
    {
        this.ctx = ctx;
        Profiling = (profiling ?? ctx.Options.Profiling) && ctx.Capabilities.TimestampsSupported;
    }

    sealed record Op(string Label, Kernel? Kernel, byte[] Push, (uint X, uint Y, uint Z) Groups, GpuBuffer[] Buffers, Access[] Access,
                     ulong FillValue = 0, long CopyBytes = 0)
    {
        public string Phase { get; init; } = "";
    }

    /// <summary>
    /// Tags every op appended until the returned scope is disposed with <paramref name="name"/>,
    /// so a profiled run's <see cref="Timings"/> can be summed per phase of a program (a training
    /// step's forward, backward and optimizer) as well as per kernel. Scopes nest, innermost
    /// closed first; an op's phase is the path of the open scopes, "outer/inner".
    /// </summary>
    public IDisposable Phase(string name)
    {
        CheckOpen();
        if (name.Length == 0 || name.Contains('/'))
            throw new ArgumentException($"a phase name must be non-empty and free of '/', got '{name}'", nameof(name));
        phases.Add(name);
        phasePath = string.Join('/', phases);
        return new PhaseScope(this, phases.Count);
    }

    sealed class PhaseScope(CommandGraph graph, int depth) : IDisposable
    {
        bool closed;

        public void Dispose()
        {
            if (closed) return;
            if (graph.phases.Count != depth)
                throw new InvalidOperationException($"phase '{graph.phases[depth - 1]}' closed while an inner phase is still open");
            closed = true;
            graph.phases.RemoveAt(depth - 1);
            graph.phasePath = string.Join('/', graph.phases);
        }
    }

    public void Dispatch<T>(Kernel kernel, (uint X, uint Y, uint Z) groups, in T push, params GpuBuffer[] buffers) where T : unmanaged
    {
        if (sizeof(T) != kernel.Layout.PushConstantBytes)
            throw new ArgumentException($"{kernel.Name}: push constants are {sizeof(T)} bytes, the kernel declares {kernel.Layout.PushConstantBytes}");
        var bytes = new byte[sizeof(T)];
        MemoryMarshal.Write(bytes, in push);
        Add(kernel, groups, bytes, buffers);
    }

    void Add(Kernel kernel, (uint X, uint Y, uint Z) groups, byte[] push, GpuBuffer[] buffers)
    {
        CheckOpen();
        if (buffers.Length != kernel.Layout.Bindings.Length)
            throw new ArgumentException($"{kernel.Name} takes {kernel.Layout.Bindings.Length} buffers, got {buffers.Length}");
        var caps = ctx.Capabilities;
        if (groups.X > caps.MaxWorkGroupCountX || groups.Y > caps.MaxWorkGroupCountY || groups.Z > caps.MaxWorkGroupCountZ)
            throw new GpuException($"{kernel.Name}: {groups} workgroups exceed the device limit ({caps.MaxWorkGroupCountX}, {caps.MaxWorkGroupCountY}, {caps.MaxWorkGroupCountZ})");
        for (int i = 0; i < buffers.Length; i++)
            if (buffers[i].Storage != ActivationPrecision.Fp32 && (kernel.Layout.HalfBindings >> i & 1) == 0)
                throw new ArgumentException($"{kernel.Name}: binding {i} is buffer {buffers[i].Name} of {buffers[i].Storage.Name()} activations, which this kernel reads only as fp32");
        foreach (var b in buffers)
            if (b.Bytes > ctx.MaxBindingBytes)
                throw GpuException.TooLarge($"{kernel.Name}: buffer {b.Name} of {b.Bytes} bytes exceeds the largest buffer a kernel can bind (maxStorageBufferRange {ctx.MaxBindingBytes})");
        if (groups.X == 0 || groups.Y == 0 || groups.Z == 0) return;
        ops.Add(new Op(kernel.Name, kernel, push, groups, buffers, kernel.Layout.Bindings) { Phase = phasePath });
    }

    /// <summary>Whether an op appended at or after index <paramref name="since"/> writes <paramref name="buffer"/>.</summary>
    public bool Writes(GpuBuffer buffer, int since)
    {
        for (int i = Math.Max(0, since); i < ops.Count; i++)
            for (int j = 0; j < ops[i].Buffers.Length; j++)
                if (ops[i].Buffers[j] == buffer && ops[i].Access[j] != Access.Read) return true;
        return false;
    }

    /// <summary>What a kernel keeps between the ops it appends to this graph (the 16-bit copies the
    /// matrix-unit product makes, say): one <typeparamref name="T"/> per graph, created on first
    /// use and disposed with the graph, so that buffers it owns live as long as the ops that use
    /// them.</summary>
    internal T State<T>() where T : class, new()
    {
        CheckOpen();
        if (!kernelState.TryGetValue(typeof(T), out var state)) kernelState[typeof(T)] = state = new T();
        return (T)state;
    }

    /// <summary>Sets every 32-bit word of the buffer to <paramref name="value"/> (0 clears floats).</summary>
    public void Fill(GpuBuffer buffer, uint value = 0)
    {
        CheckOpen();
        ops.Add(new Op("fill", null, [], default, [buffer], [Access.Write], FillValue: value) { Phase = phasePath });
    }

    /// <summary>Copies the first <paramref name="bytes"/> of <paramref name="src"/> into <paramref name="dst"/>.</summary>
    public void Copy(GpuBuffer src, GpuBuffer dst, long? bytes = null)
    {
        CheckOpen();
        if (src.Storage != dst.Storage)
            throw new ArgumentException($"copy from {src.Name} ({src.Storage.Name()}) to {dst.Name} ({dst.Storage.Name()}): a copy keeps bytes, so both must store their elements alike");
        long n = bytes ?? Math.Min(src.Bytes, dst.Bytes);
        if (n > src.Bytes || n > dst.Bytes) throw new ArgumentOutOfRangeException(nameof(bytes));
        ops.Add(new Op("copy", null, [], default, [src, dst], [Access.Read, Access.Write], CopyBytes: n) { Phase = phasePath });
    }

    void CheckOpen()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (sealedGraph) throw new InvalidOperationException("this command graph was already submitted; create a new one to change it");
    }

    /// <summary>Submits the recorded work and waits for it (a whole run, or the rest of one that
    /// <see cref="Advance"/> began).</summary>
    public void Run() => Submit([]).Wait();

    /// <summary>The ticket of the last submit: once complete, everything submitted so far is.</summary>
    public GpuTicket Ticket => last;

    /// <summary>Whether part of a run has been submitted and the rest has not.</summary>
    public bool RunInProgress => next >= 0 && next < ops.Count;

    /// <summary>Submits every op of the run not yet submitted, after <paramref name="waits"/>, and
    /// returns at once with the ticket of its completion. A new run begins when the last one was
    /// wholly submitted; its ops must be complete by then (buffers are reused between runs).</summary>
    public GpuTicket Submit(ReadOnlySpan<GpuWait> waits)
    {
        using var _ = ctx.Enter();
        BeginRunIfNeeded();
        return SubmitSegment(next, ops.Count, Profiling, waits, estimate: null);
    }

    /// <summary>
    /// Submits the next ops of the run whose estimated GPU time fits <paramref name="budgetMs"/>
    /// (the part of it the plan fills, <see cref="DevicePlan.SliceFill"/>) and returns at once.
    /// Estimates are the measured times of earlier runs of this graph, each op's and the gap
    /// before it (a decaying maximum, so one fast run does not shrink them at once); an op never measured
    /// goes alone, the safe default, and so does an op longer than the budget, which the report
    /// names. A run advanced in slices computes exactly what one submit of it would: the same
    /// ops in the same order, with barriers at least where the whole run has them.
    /// </summary>
    public SliceReport Advance(double budgetMs, ReadOnlySpan<GpuWait> waits)
    {
        if (!(budgetMs > 0)) throw new ArgumentOutOfRangeException(nameof(budgetMs), budgetMs, "a GPU-time budget must be positive");
        using var _ = ctx.Enter();
        BeginRunIfNeeded();
        int start = next, end = start;
        double sum = 0, fill = budgetMs * ctx.Plan.SliceFill;
        string? overBudget = null;
        while (end < ops.Count)
        {
            if (estimateMs[end] is not double e)
            {
                if (end == start) end++;
                break;
            }
            // An op after the first also brings the gap before it (a gap never measured, that of
            // an op so far always first in its slice, is taken as the largest one seen).
            if (end > start) e += gapMs[end] ?? largestGapMs;
            if (end > start && sum + e > fill) break;
            if (e > budgetMs) overBudget = OpName(end);
            sum += e;
            end++;
            if (overBudget is not null) break;
        }
        double? estimate = end > start && estimateMs[start] is not null ? sum : null;
        var ticket = SubmitSegment(start, end, stamps: true, waits, estimate);
        return new SliceReport(ticket, start, end - start, ops.Count - end, estimate, overBudget);
    }

    string OpName(int i) => ops[i].Phase.Length == 0 ? ops[i].Label : $"{ops[i].Phase}/{ops[i].Label}";

    /// <summary>The slices of the last completed run that recorded timestamps (every slice of
    /// <see cref="Advance"/>; a whole submit only when profiling): their measured GPU time beside
    /// the estimate they were cut by.</summary>
    public IReadOnlyList<SliceTiming> SliceTimings
    {
        get { CollectIfComplete(); return sliceTimings; }
    }

    void BeginRunIfNeeded()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!sealedGraph) Seal();
        if (RunInProgress) return;
        if (!last.IsComplete)
            throw new InvalidOperationException("the previous run of this recording is still in flight: wait for its ticket before starting the next (they share buffers)");
        CollectIfComplete();
        next = 0;
        collected = false;
    }

    GpuTicket SubmitSegment(int start, int end, bool stamps, ReadOnlySpan<GpuWait> waits, double? estimate)
    {
        stamps &= ctx.Capabilities.TimestampsSupported;
        var key = (start, end, stamps);
        if (!segments.TryGetValue(key, out var cb)) segments[key] = cb = RecordSegment(start, end, stamps);
        last = ctx.Submit(cb, waits);
        next = end;
        if (stamps && end > start) runSlices.Add(new PendingSlice(start, end, estimate));
        return last;
    }

    readonly record struct PendingSlice(int Start, int End, double? EstimateMs);

    /// <summary>Reads the timestamps of the last run once it is complete: per-op timings (when
    /// profiling), slice timings and the estimates <see cref="Advance"/> cuts by.</summary>
    void CollectIfComplete()
    {
        // Only a whole run, once: a run still being advanced has slices to come.
        if (collected || next < 0 || RunInProgress || !last.IsComplete) return;
        collected = true;
        // A run without timestamps (a whole submit, not profiling) leaves no timings, not the last ones.
        sliceTimings.Clear();
        timings.Clear();
        if (runSlices.Count == 0) return;
        var stamps = new ulong[2 * ops.Count];
        double period = ctx.Capabilities.TimestampPeriodNs * 1e-6;
        foreach (var slice in runSlices)
        {
            int first = 2 * slice.Start, count = 2 * (slice.End - slice.Start);
            fixed (ulong* s = &stamps[first])
                GpuException.Check(ctx.Vk.GetQueryPoolResults(ctx.Device, queryPool, (uint)first, (uint)count, (nuint)(count * 8), s, 8,
                    QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
            double longest = 0;
            for (int i = slice.Start; i < slice.End; i++)
            {
                double ms = (stamps[2 * i + 1] - stamps[2 * i]) * period;
                longest = Math.Max(longest, ms);
                // A decaying maximum: a slow outlier keeps its op alone for a few runs, and a
                // one-off fast run does not pack ops into slices that then overrun the budget.
                estimateMs[i] = Decayed(estimateMs[i], ms);
                if (i == slice.Start) continue;
                double gap = (stamps[2 * i] - stamps[2 * i - 1]) * period;
                gapMs[i] = Decayed(gapMs[i], gap);
                largestGapMs = Math.Max(largestGapMs, gap);
            }
            double total = (stamps[2 * slice.End - 1] - stamps[2 * slice.Start]) * period;
            sliceTimings.Add(new SliceTiming(slice.Start, slice.End - slice.Start, total, slice.EstimateMs, longest));
        }
        bool whole = runSlices.Sum(r => r.End - r.Start) == ops.Count;
        runSlices.Clear();
        if (Profiling && whole)
            for (int i = 0; i < ops.Count; i++)
                timings.Add(new DispatchTiming(ops[i].Label, (stamps[2 * i + 1] - stamps[2 * i]) * period, ops[i].Phase));
    }

    const double EstimateDecay = 0.8;

    static double Decayed(double? old, double measured) => old is double o ? Math.Max(measured, EstimateDecay * o) : measured;

    /// <summary>Fixes the op list: one descriptor set per dispatch, and where barriers go.</summary>
    void Seal()
    {
        var vk = ctx.Vk;
        int dispatches = DispatchCount;
        int descriptors = ops.Where(o => o.Kernel is not null).Sum(o => o.Buffers.Length);
        if (dispatches > 0)
        {
            var size = new DescriptorPoolSize(DescriptorType.StorageBuffer, (uint)Math.Max(1, descriptors));
            var poolInfo = new DescriptorPoolCreateInfo
            {
                SType = StructureType.DescriptorPoolCreateInfo,
                MaxSets = (uint)dispatches,
                PoolSizeCount = 1,
                PPoolSizes = &size,
            };
            GpuException.Check(vk.CreateDescriptorPool(ctx.Device, &poolInfo, null, out descriptorPool), "vkCreateDescriptorPool");
        }
        if (ctx.Capabilities.TimestampsSupported && ops.Count > 0)
        {
            var qInfo = new QueryPoolCreateInfo { SType = StructureType.QueryPoolCreateInfo, QueryType = QueryType.Timestamp, QueryCount = (uint)(2 * ops.Count) };
            GpuException.Check(vk.CreateQueryPool(ctx.Device, &qInfo, null, out queryPool), "vkCreateQueryPool");
        }
        descriptorSets = new DescriptorSet[ops.Count];
        for (int i = 0; i < ops.Count; i++)
            if (ops[i].Kernel is not null) descriptorSets[i] = WriteDescriptorSet(ops[i]);
        estimateMs = new double?[ops.Count];
        gapMs = new double?[ops.Count];

        // A global memory barrier goes before an op that reads or writes a buffer an earlier op
        // since the last barrier wrote (RAW, WAW), or writes one it read (WAR).
        barrierBefore = new bool[ops.Count];
        var written = new HashSet<ulong>();
        var read = new HashSet<ulong>();
        for (int i = 0; i < ops.Count; i++)
        {
            var op = ops[i];
            bool hazard = false;
            for (int b = 0; b < op.Buffers.Length; b++)
            {
                ulong h = op.Buffers[b].Handle.Handle;
                bool writes = op.Access[b] != Access.Read;
                if (written.Contains(h) || (writes && read.Contains(h))) hazard = true;
            }
            if (hazard)
            {
                barrierBefore[i] = true;
                written.Clear();
                read.Clear();
            }
            for (int b = 0; b < op.Buffers.Length; b++)
                (op.Access[b] == Access.Read ? read : written).Add(op.Buffers[b].Handle.Handle);
            for (int b = 0; b < op.Buffers.Length; b++)
                if (op.Access[b] == Access.ReadWrite) read.Add(op.Buffers[b].Handle.Handle);
        }
        sealedGraph = true;
    }

    /// <summary>The command buffer of ops [start, end): what runs in one submit. A barrier at the
    /// top covers every buffer, so the work of earlier submits (the slice before, an upload) is
    /// complete and visible first; inside, the barriers of the whole run (a barrier the whole
    /// run has before an op is needed in any slice that holds the op and an earlier one, and one
    /// it lacks is not, since the slice's ops since its last barrier are a subset of the whole
    /// run's).</summary>
    CommandBuffer RecordSegment(int start, int end, bool stamps)
    {
        var vk = ctx.Vk;
        var cb = ctx.AllocateCommandBuffer();
        // A begin or end that fails frees the buffer: the caller never gets it to free.
        try
        {
            var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo };
            GpuException.Check(vk.BeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer");
            if (stamps && end > start) vk.CmdResetQueryPool(cb, queryPool, (uint)(2 * start), (uint)(2 * (end - start)));
            Barrier(cb, PipelineStageFlags.AllCommandsBit, AccessFlags.MemoryWriteBit, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit,
                    AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);
            for (int i = start; i < end; i++)
            {
                if (i > start && barrierBefore[i])
                    Barrier(cb, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit, AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit,
                            PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit,
                            AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);
                if (stamps) vk.CmdWriteTimestamp(cb, PipelineStageFlags.TopOfPipeBit, queryPool, (uint)(2 * i));
                Record(cb, i);
                if (stamps) vk.CmdWriteTimestamp(cb, PipelineStageFlags.BottomOfPipeBit, queryPool, (uint)(2 * i + 1));
            }
            // Results are read through mapped pointers once the ticket completes; make the writes host-visible.
            Barrier(cb, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit, AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit,
                    PipelineStageFlags.HostBit, AccessFlags.HostReadBit);
            GpuException.Check(vk.EndCommandBuffer(cb), "vkEndCommandBuffer");
        }
        catch
        {
            ctx.FreeCommandBuffer(cb);
            throw;
        }
        return cb;
    }

    void Record(CommandBuffer cb, int i)
    {
        var vk = ctx.Vk;
        var op = ops[i];
        if (op.Kernel is null)
        {
            if (op.Buffers.Length == 1)
                vk.CmdFillBuffer(cb, op.Buffers[0].Handle, 0, Vk.WholeSize, (uint)op.FillValue);
            else
            {
                var region = new BufferCopy(0, 0, (ulong)op.CopyBytes);
                vk.CmdCopyBuffer(cb, op.Buffers[0].Handle, op.Buffers[1].Handle, 1, &region);
            }
            return;
        }
        var k = op.Kernel;
        var set = descriptorSets[i];
        vk.CmdBindPipeline(cb, PipelineBindPoint.Compute, k.Pipeline);
        vk.CmdBindDescriptorSets(cb, PipelineBindPoint.Compute, k.PipelineLayout, 0, 1, &set, 0, null);
        if (op.Push.Length > 0)
            fixed (byte* p = op.Push)
                vk.CmdPushConstants(cb, k.PipelineLayout, ShaderStageFlags.ComputeBit, 0, (uint)op.Push.Length, p);
        vk.CmdDispatch(cb, op.Groups.X, op.Groups.Y, op.Groups.Z);
    }

    DescriptorSet WriteDescriptorSet(Op op)
    {
        var vk = ctx.Vk;
        var layout = op.Kernel!.SetLayout;
        var alloc = new DescriptorSetAllocateInfo
        {
            SType = StructureType.DescriptorSetAllocateInfo,
            DescriptorPool = descriptorPool,
            DescriptorSetCount = 1,
            PSetLayouts = &layout,
        };
        GpuException.Check(vk.AllocateDescriptorSets(ctx.Device, &alloc, out var set), "vkAllocateDescriptorSets");
        int n = op.Buffers.Length;
        var infos = stackalloc DescriptorBufferInfo[n];
        var writes = stackalloc WriteDescriptorSet[n];
        for (int b = 0; b < n; b++)
        {
            infos[b] = new DescriptorBufferInfo(op.Buffers[b].Handle, 0, Vk.WholeSize);
            writes[b] = new WriteDescriptorSet
            {
                SType = StructureType.WriteDescriptorSet,
                DstSet = set,
                DstBinding = (uint)b,
                DescriptorCount = 1,
                DescriptorType = DescriptorType.StorageBuffer,
                PBufferInfo = &infos[b],
            };
        }
        vk.UpdateDescriptorSets(ctx.Device, (uint)n, writes, 0, null);
        return set;
    }

    void Barrier(CommandBuffer cb, PipelineStageFlags src, AccessFlags srcAccess, PipelineStageFlags dst, AccessFlags dstAccess)
    {
        var mb = new MemoryBarrier { SType = StructureType.MemoryBarrier, SrcAccessMask = srcAccess, DstAccessMask = dstAccess };
        ctx.Vk.CmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, null, 0, null);
    }

    public void Dispose()
    {
        if (disposed) return;
        using var _ = ctx.Enter();
        disposed = true;
        var vk = ctx.Vk;
        // Our own last submit only: a queue wait idle would wait for a host's work too.
        last.Wait();
        foreach (var cb in segments.Values) ctx.FreeCommandBuffer(cb);
        if (descriptorPool.Handle != 0) vk.DestroyDescriptorPool(ctx.Device, descriptorPool, null);
        if (queryPool.Handle != 0) vk.DestroyQueryPool(ctx.Device, queryPool, null);
        foreach (var state in kernelState.Values) (state as IDisposable)?.Dispose();
    }
}
