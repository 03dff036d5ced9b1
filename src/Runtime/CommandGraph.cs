using System.Runtime.InteropServices;
using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace VkPrompt.Runtime;

/// <summary>GPU time of one op of a profiled run. <paramref name="Phase"/> is the path of the
/// <see cref="CommandGraph.Phase"/> scopes the op was appended in ("backward/recompute"), or "".</summary>
internal readonly record struct DispatchTiming(string Label, double Milliseconds, string Phase = "");

/// <summary>
/// A sequence of GPU work recorded once and replayed (Kompute's "sequence"): dispatches, fills
/// and copies are appended, the command buffer is built on the first <see cref="Run"/>, and every
/// later run resubmits it unchanged. Barriers are derived from each kernel's declared binding
/// access: a global memory barrier goes in only where an op reads or writes a buffer that an
/// earlier op since the last barrier wrote (RAW, WAW), or writes one it read (WAR).
/// </summary>
internal sealed unsafe class CommandGraph : IDisposable
{
    readonly GpuContext ctx;
    readonly List<Op> ops = new();
    CommandBuffer commandBuffer;
    DescriptorPool descriptorPool;
    QueryPool queryPool;
    bool built, disposed;
    readonly List<DispatchTiming> timings = new();
    readonly List<string> phases = new();
    string phasePath = "";

    readonly Dictionary<Type, object> kernelState = new();

    public GpuContext Context => ctx;
    public int DispatchCount => ops.Count(o => o.Kernel is not null);
    /// <summary>Ops appended so far: dispatches, fills and copies.</summary>
    public int OpCount => ops.Count;
    public int BarrierCount { get; private set; }
    public bool Profiling { get; }

    /// <summary>Per-op GPU time of the last run, when profiling is on.</summary>
    public IReadOnlyList<DispatchTiming> Timings => timings;

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

    public void Dispatch(Kernel kernel, (uint X, uint Y, uint Z) groups, params GpuBuffer[] buffers)
    {
        if (kernel.Layout.PushConstantBytes != 0)
            throw new ArgumentException($"{kernel.Name} needs push constants");
        Add(kernel, groups, [], buffers);
    }

    void Add(Kernel kernel, (uint X, uint Y, uint Z) groups, byte[] push, GpuBuffer[] buffers)
    {
        CheckOpen();
        if (buffers.Length != kernel.Layout.Bindings.Length)
            throw new ArgumentException($"{kernel.Name} takes {kernel.Layout.Bindings.Length} buffers, got {buffers.Length}");
        var caps = ctx.Capabilities;
        if (groups.X > caps.MaxWorkGroupCountX || groups.Y > caps.MaxWorkGroupCountY || groups.Z > caps.MaxWorkGroupCountZ)
            throw new GpuException($"{kernel.Name}: {groups} workgroups exceed the device limit ({caps.MaxWorkGroupCountX}, {caps.MaxWorkGroupCountY}, {caps.MaxWorkGroupCountZ})");
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
        long n = bytes ?? Math.Min(src.Bytes, dst.Bytes);
        if (n > src.Bytes || n > dst.Bytes) throw new ArgumentOutOfRangeException(nameof(bytes));
        ops.Add(new Op("copy", null, [], default, [src, dst], [Access.Read, Access.Write], CopyBytes: n) { Phase = phasePath });
    }

    void CheckOpen()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (built) throw new InvalidOperationException("this command graph was already recorded; create a new one to change it");
    }

    /// <summary>Submits the recorded work and waits for it. Records on the first call.</summary>
    public void Run()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!built) Build();
        ctx.Submit(commandBuffer);
        if (Profiling) ReadTimings();
    }

    void Build()
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
        if (Profiling && ops.Count > 0)
        {
            var qInfo = new QueryPoolCreateInfo { SType = StructureType.QueryPoolCreateInfo, QueryType = QueryType.Timestamp, QueryCount = (uint)(2 * ops.Count) };
            GpuException.Check(vk.CreateQueryPool(ctx.Device, &qInfo, null, out queryPool), "vkCreateQueryPool");
        }

        commandBuffer = ctx.AllocateCommandBuffer();
        var begin = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo };
        GpuException.Check(vk.BeginCommandBuffer(commandBuffer, &begin), "vkBeginCommandBuffer");
        if (Profiling && ops.Count > 0) vk.CmdResetQueryPool(commandBuffer, queryPool, 0, (uint)(2 * ops.Count));

        // Work from an earlier submission (a previous replay, an upload) must be complete and
        // visible before the first op here; one barrier at the top covers every buffer.
        Barrier(PipelineStageFlags.AllCommandsBit, AccessFlags.MemoryWriteBit, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit,
                AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);

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
                BarrierCount++;
                Barrier(PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit, AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit,
                        PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit,
                        AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);
                written.Clear();
                read.Clear();
            }
            for (int b = 0; b < op.Buffers.Length; b++)
                (op.Access[b] == Access.Read ? read : written).Add(op.Buffers[b].Handle.Handle);
            for (int b = 0; b < op.Buffers.Length; b++)
                if (op.Access[b] == Access.ReadWrite) read.Add(op.Buffers[b].Handle.Handle);

            if (Profiling) vk.CmdWriteTimestamp(commandBuffer, PipelineStageFlags.TopOfPipeBit, queryPool, (uint)(2 * i));
            Record(op);
            if (Profiling) vk.CmdWriteTimestamp(commandBuffer, PipelineStageFlags.BottomOfPipeBit, queryPool, (uint)(2 * i + 1));
        }

        // Results are read through mapped pointers after the fence; make the writes host-visible.
        Barrier(PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit, AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit,
                PipelineStageFlags.HostBit, AccessFlags.HostReadBit);
        GpuException.Check(vk.EndCommandBuffer(commandBuffer), "vkEndCommandBuffer");
        built = true;
    }

    void Record(Op op)
    {
        var vk = ctx.Vk;
        if (op.Kernel is null)
        {
            if (op.Buffers.Length == 1)
                vk.CmdFillBuffer(commandBuffer, op.Buffers[0].Handle, 0, Vk.WholeSize, (uint)op.FillValue);
            else
            {
                var region = new BufferCopy(0, 0, (ulong)op.CopyBytes);
                vk.CmdCopyBuffer(commandBuffer, op.Buffers[0].Handle, op.Buffers[1].Handle, 1, &region);
            }
            return;
        }
        var k = op.Kernel;
        var layout = k.SetLayout;
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
        vk.CmdBindPipeline(commandBuffer, PipelineBindPoint.Compute, k.Pipeline);
        vk.CmdBindDescriptorSets(commandBuffer, PipelineBindPoint.Compute, k.PipelineLayout, 0, 1, &set, 0, null);
        if (op.Push.Length > 0)
            fixed (byte* p = op.Push)
                vk.CmdPushConstants(commandBuffer, k.PipelineLayout, ShaderStageFlags.ComputeBit, 0, (uint)op.Push.Length, p);
        vk.CmdDispatch(commandBuffer, op.Groups.X, op.Groups.Y, op.Groups.Z);
    }

    void Barrier(PipelineStageFlags src, AccessFlags srcAccess, PipelineStageFlags dst, AccessFlags dstAccess)
    {
        var mb = new MemoryBarrier { SType = StructureType.MemoryBarrier, SrcAccessMask = srcAccess, DstAccessMask = dstAccess };
        ctx.Vk.CmdPipelineBarrier(commandBuffer, src, dst, 0, 1, &mb, 0, null, 0, null);
    }

    void ReadTimings()
    {
        timings.Clear();
        if (ops.Count == 0) return;
        var stamps = new ulong[2 * ops.Count];
        fixed (ulong* s = stamps)
            GpuException.Check(ctx.Vk.GetQueryPoolResults(ctx.Device, queryPool, 0, (uint)stamps.Length, (nuint)(stamps.Length * 8), s, 8,
                QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
        double period = ctx.Capabilities.TimestampPeriodNs * 1e-6;
        for (int i = 0; i < ops.Count; i++)
            timings.Add(new DispatchTiming(ops[i].Label, (stamps[2 * i + 1] - stamps[2 * i]) * period, ops[i].Phase));
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        var vk = ctx.Vk;
        // No wait: Run returns only after its submit's fence signalled (GpuContext.Submit), so the
        // command buffer is not in use, and a queue wait idle would wait for a host's work too.
        if (commandBuffer.Handle != 0) ctx.FreeCommandBuffer(commandBuffer);
        if (descriptorPool.Handle != 0) vk.DestroyDescriptorPool(ctx.Device, descriptorPool, null);
        if (queryPool.Handle != 0) vk.DestroyQueryPool(ctx.Device, queryPool, null);
        foreach (var state in kernelState.Values) (state as IDisposable)?.Dispose();
    }
}
