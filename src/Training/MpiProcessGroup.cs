using System.Runtime.InteropServices;

namespace VkPrompt.Training;

/// <summary>
/// The ranks of an MPI job (MPI_COMM_WORLD) as an <see cref="IProcessGroup"/>: one process per
/// rank, started by <c>mpiexec</c>. Only the calls prompt tuning needs are bound, through function
/// pointers from the MPI library found at run time (<see cref="Open"/>), so nothing links against
/// MPI and a build or a run without it needs no MPI at all.
/// </summary>
/// <remarks>
/// Why no maintained .NET binding: MPI.NET (NuGet 1.4.0, a port of the 2008 Indiana University
/// library) targets MS-MPI's ABI and library name and is not maintained against current MPICH or
/// Open MPI; nothing else on NuGet binds MPI. What prompt tuning needs is a dozen calls, bound here.
///
/// ABIs: MPI's handles are not one ABI. MPICH and its derivatives (Intel MPI, MVAPICH, Cray MPICH,
/// and MS-MPI on Windows) share one: handles are 32-bit integers with fixed values (mpi.h), bound
/// here. Open MPI's handles are pointers to its global objects (ompi_mpi_comm_world, ...), so every
/// call's signature differs; it is recognised by those exports and refused with a message naming
/// what is supported, rather than called with the wrong handles.
///
/// Errors: MPI_COMM_WORLD's handler is set to MPI_ERRORS_RETURN, so a failed call (a rank that
/// died mid-collective, where the transport reports it) becomes an <see cref="MpiException"/> with
/// MPI's own message; the CLI then calls <see cref="Abort"/>, which makes mpiexec end every rank.
/// </remarks>
internal sealed unsafe class MpiProcessGroup : IProcessGroup
{
    /// <summary>The names <see cref="Open"/> tries, in order: MPICH's ABI under its usual sonames
    /// (Debian's MPICH as libmpich.so.12, MPICH, Intel MPI and MVAPICH as libmpi.so.12, MS-MPI),
    /// then Open MPI's, only to name it in the refusal.</summary>
    internal static readonly string[] LibraryNames = ["libmpich.so.12", "libmpi.so.12", "msmpi.dll", "libmpi.so.40", "libmpi.so"];

    // MPICH ABI handles (mpich/mpi.h: typedef int MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler).
    const int CommWorld = 0x44000000;
    const int Float = 0x4c00040a;
    const int Double = 0x4c00080b;
    const int Int = 0x4c000405;
    const int Lor = 0x58000007;
    const int ErrorsReturn = 0x54000001;
    const int ThreadSerialized = 2;
    const int Success = 0;
    const nint StatusIgnore = 1;
    const int MaxErrorString = 1024;   // MPI_MAX_ERROR_STRING is 512 in MPICH, 1024 in MS-MPI

    readonly nint library;
    readonly delegate* unmanaged<int*, int> finalized;
    readonly delegate* unmanaged<int> finalize;
    readonly delegate* unmanaged<void*, int, int, void*, int, int, int, int> allgather;
    readonly delegate* unmanaged<void*, int, int, int, int, int> bcast;
    readonly delegate* unmanaged<void*, void*, int, int, int, int, int> allreduce;
    readonly delegate* unmanaged<int, int, int> abort;
    readonly delegate* unmanaged<int, byte*, int*, int> errorString;
    readonly delegate* unmanaged<int, int*, int> ibarrier;
    readonly delegate* unmanaged<int*, int*, nint, int> test;
    // Calls are made from whichever thread runs the training loop, one at a time (MPI_THREAD_SERIALIZED).
    readonly Lock gate = new();
    bool disposed;

    /// <summary>The name the MPI library was loaded by, for the log. The library stays loaded for the
    /// life of the process: MPI cannot be initialised again once finalised.</summary>
    public string Library { get; }
    public int Rank { get; }
    public int Size { get; }

    MpiProcessGroup(nint library, string name)
    {
        this.library = library;
        Library = name;
        finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        allgather = (delegate* unmanaged<void*, int, int, void*, int, int, int, int>)Export("MPI_Allgather");
        bcast = (delegate* unmanaged<void*, int, int, int, int, int>)Export("MPI_Bcast");
        allreduce = (delegate* unmanaged<void*, void*, int, int, int, int, int>)Export("MPI_Allreduce");
        abort = (delegate* unmanaged<int, int, int>)Export("MPI_Abort");
        errorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");
        ibarrier = (delegate* unmanaged<int, int*, int>)Export("MPI_Ibarrier");
        test = (delegate* unmanaged<int*, int*, nint, int>)Export("MPI_Test");
        var initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        var initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread");
        var setErrhandler = (delegate* unmanaged<int, int, int>)Export("MPI_Comm_set_errhandler");
        var commRank = (delegate* unmanaged<int, int*, int>)Export("MPI_Comm_rank");
        var commSize = (delegate* unmanaged<int, int*, int>)Export("MPI_Comm_size");

        int flag, provided, rank, size;
        Check(initialized(&flag), "MPI_Initialized");
        if (flag != 0) throw new MpiException("MPI is already initialised in this process; one process group per process");
        // No argc/argv (allowed since MPI-2): mpiexec passes what MPI needs in the environment.
        // SERIALIZED asks for calls from any thread, one at a time (the gate); an MPI that grants
        // less still works here, where the training loop's one thread makes every call.
        Check(initThread(null, null, ThreadSerialized, &provided), "MPI_Init_thread");
        Check(setErrhandler(CommWorld, ErrorsReturn), "MPI_Comm_set_errhandler");
        Check(commRank(CommWorld, &rank), "MPI_Comm_rank");
        Check(commSize(CommWorld, &size), "MPI_Comm_size");
        (Rank, Size) = (rank, size);
    }

    /// <summary>Loads the MPI library (<paramref name="library"/>: a name or path; null: the first
    /// of <see cref="LibraryNames"/> found), initialises MPI and joins MPI_COMM_WORLD. Throws
    /// <see cref="MpiException"/> where there is no MPI library, or only one of another ABI.</summary>
    public static MpiProcessGroup Open(string? library = null)
    {
        string[] names = library is null ? LibraryNames : [library];
        nint handle = 0;
        string? found = names.FirstOrDefault(n => NativeLibrary.TryLoad(n, out handle));
        if (found is null)
            throw new MpiException($"no MPI library found (tried {string.Join(", ", names)}): install MPICH (Debian/Ubuntu: apt-get install mpich), " +
                                   "or an MPI of MPICH's ABI (Intel MPI, MVAPICH, Cray MPICH, MS-MPI), and start the ranks with its mpiexec");
        // Open MPI's handles are pointers to these objects: calling it with MPICH's integers would crash.
        if (NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _))
        {
            NativeLibrary.Free(handle);
            throw new MpiException($"{found} is Open MPI, whose ABI (handles are pointers) VkPrompt does not bind; " +
                                   "--distributed mpi runs with MPI libraries of MPICH's ABI: MPICH, Intel MPI, MVAPICH, Cray MPICH, MS-MPI");
        }
        try { return new MpiProcessGroup(handle, found); }
        catch { NativeLibrary.Free(handle); throw; }
    }

    nint Export(string name) => NativeLibrary.TryGetExport(library, name, out var f) ? f
        : throw new MpiException($"{Library} has no {name}: not an MPI library of MPICH's ABI");

    public void AllGather(ReadOnlySpan<double> mine, Span<double> all)
    {
        CheckGather(mine.Length, all.Length);
        fixed (double* s = mine)
        fixed (double* r = all)
            lock (gate) Check(allgather(s, mine.Length, Double, r, mine.Length, Double, CommWorld), "MPI_Allgather");
    }

    void CheckGather(int mine, int all)
    {
        if ((long)mine * Size != all)
            throw new ArgumentException($"gathering {mine} values from each of {Size} ranks needs {(long)mine * Size}, not {all}");
    }

    public void Broadcast(Span<float> data, int root)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, Size);
        fixed (float* d = data)
            lock (gate) Check(bcast(d, data.Length, Float, root, CommWorld), "MPI_Bcast");
    }

    public bool Any(bool mine)
    {
        int send = mine ? 1 : 0, any;
        lock (gate) Check(allreduce(&send, &any, 1, Int, Lor, CommWorld), "MPI_Allreduce");
        return any != 0;
    }

    /// <summary>Waits until every rank has called this, sleeping <paramref name="poll"/> between
    /// looks: MPI's blocking collectives spin a core while they wait, which would take it from a
    /// rank computing on the CPU meanwhile (lavapipe), as while one rank times a step alone.</summary>
    public void Barrier(TimeSpan poll)
    {
        int request, done = 0;
        lock (gate) Check(ibarrier(CommWorld, &request), "MPI_Ibarrier");
        while (true)
        {
            lock (gate) Check(test(&request, &done, StatusIgnore), "MPI_Test");
            if (done != 0) return;
            Thread.Sleep(poll);
        }
    }

    /// <summary>Ends every rank of the job with <paramref name="exitCode"/> (MPI_Abort): how a rank
    /// that failed keeps the others from waiting forever in the next collective. Does not return
    /// where MPI does what it promises.</summary>
    public void Abort(int exitCode)
    {
        // Not under the lock: another thread may be blocked in a collective that will never end.
        _ = abort(CommWorld, exitCode);
    }

    void Check(int code, string call)
    {
        if (code == Success) return;
        var text = new byte[MaxErrorString];
        int length = 0;
        fixed (byte* t = text)
            if (errorString(code, t, &length) != Success) length = 0;
        string message = length > 0 ? System.Text.Encoding.ASCII.GetString(text, 0, Math.Min(length, text.Length)).Trim() : $"error code {code}";
        throw new MpiException($"{call} failed: {message}");
    }

    /// <summary>Finalises MPI (every rank must, collectively, at the end of a run that went well).</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        int done;
        if (finalized(&done) == Success && done == 0) _ = finalize();
    }
}

/// <summary>MPI is missing, of an ABI VkPrompt does not bind, or a call failed (a rank died).</summary>
internal sealed class MpiException(string message) : Exception(message);
