using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>How MpiProcessGroup refuses what is not an MPI it binds, without initialising MPI in
/// the test process (the collectives run under mpiexec: tests/Cli/MpiTests.cs).</summary>
public sealed class MpiProcessGroupTests
{
    [Fact]
    public void AMissingLibraryIsNamedWithWhatToInstall()
    {
        var e = Assert.Throws<MpiException>(() => MpiProcessGroup.Open("libvkprompt-no-such-mpi.so"));
        Assert.Contains("no MPI library found (tried libvkprompt-no-such-mpi.so)", e.Message, StringComparison.Ordinal);
        Assert.Contains("apt-get install mpich", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A library that loads but has no MPI entry points (the C library) is refused by
    /// name, before anything is called.</summary>
    [Fact]
    public void ALibraryWithoutMpiIsRefused()
    {
        var e = Assert.Throws<MpiException>(() => MpiProcessGroup.Open("libc.so.6"));
        Assert.Equal("libc.so.6 has no MPI_Finalized: not an MPI library of MPICH's ABI", e.Message);
    }
}
