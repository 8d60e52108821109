using System.Runtime.InteropServices;

namespace Kiou;

/// <summary>
/// Loads the librdkafka that ships with Confluent.Kafka (runtimes/RID/native next to the app) before anything
/// touches Confluent.Kafka. Left to itself, Confluent.Kafka asks the system loader for "librdkafka" first and takes
/// whatever the machine has installed (Debian's librdkafka-dev puts an old one in /usr/lib), which then lacks
/// functions Confluent.Kafka calls (EntryPointNotFoundException). Library.Load(path) cannot help on its own: it
/// opens the path through an unversioned "libdl" that glibc-only machines lack. Compiled into the tools, the bench driver and
/// the test projects (linked source: they share no assembly that references Confluent.Kafka).
/// </summary>
static class BundledLibrdkafka
{
    static readonly Lock Gate = new();
    static string? _path;

    /// <summary>The path of the librdkafka now loaded; loads it on the first call. Throws when no bundled file loads.</summary>
    public static string Load()
    {
        lock (Gate)
        {
            if (_path is not null)
                return _path;
            var candidates = Candidates().Where(File.Exists).ToList();
            if (candidates.Count == 0)
                throw new DllNotFoundException($"the bundled librdkafka was not found under {AppContext.BaseDirectory} (runtimes/{Rid()}/native): rebuild, or reinstall the application");
            string? chosen = null;
            IntPtr loaded = IntPtr.Zero;
            // Confluent.Kafka imports "librdkafka" by name: that name resolves to the bundled file, never to the system's.
            // The runtime asks again for every imported function: the first handle that loaded answers all of them.
            NativeLibrary.SetDllImportResolver(typeof(Confluent.Kafka.Library).Assembly, (name, _, _) =>
            {
                if (name != "librdkafka")
                    return IntPtr.Zero;
                if (loaded != IntPtr.Zero)
                    return loaded;
                foreach (var path in candidates)
                {
                    // A variant built for another libc or OpenSSL (or needing a library the machine lacks) does not
                    // load: try the next one.
                    if (NativeLibrary.TryLoad(path, out var handle))
                    {
                        chosen = path;
                        return loaded = handle;
                    }
                }
                return IntPtr.Zero;
            });
            // False means some code loaded a librdkafka before us, possibly the system's: say so rather than run on it.
            if (!Confluent.Kafka.Library.Load())
                throw new InvalidOperationException("librdkafka was loaded before the bundled one: BundledLibrdkafka.Load must run before any use of Confluent.Kafka");
            return _path = chosen ?? throw new DllNotFoundException($"none of the bundled librdkafka files could be loaded ({string.Join(", ", candidates)})");
        }
    }

    static string Rid()
    {
        string arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        if (OperatingSystem.IsWindows())
            return "win-" + arch;
        if (OperatingSystem.IsMacOS())
            return "osx-" + arch;
        return "linux-" + arch;
    }

    // In the order Confluent.Kafka would pick them: musl systems take the Alpine build; the CentOS 8 build is for
    // systems whose OpenSSL (or libsasl2) the default one cannot load. A build for one runtime (the tools' native
    // executable) has them next to the application rather than under runtimes/.
    static IEnumerable<string> Candidates()
    {
        string dir = AppContext.BaseDirectory;
        string native = Path.Combine(dir, "runtimes", Rid(), "native");
        if (OperatingSystem.IsWindows())
            return [Path.Combine(native, "librdkafka.dll"), Path.Combine(dir, "librdkafka.dll")];
        if (OperatingSystem.IsMacOS())
            return [Path.Combine(native, "librdkafka.dylib"), Path.Combine(dir, "librdkafka.dylib")];
        bool musl = Directory.Exists("/lib") && Directory.EnumerateFiles("/lib", "ld-musl-*").Any();
        return musl
            ? [Path.Combine(native, "alpine-librdkafka.so"), Path.Combine(dir, "alpine-librdkafka.so"), Path.Combine(dir, "librdkafka.so")]
            : [Path.Combine(native, "librdkafka.so"), Path.Combine(dir, "librdkafka.so"), Path.Combine(native, "centos8-librdkafka.so"), Path.Combine(dir, "centos8-librdkafka.so")];
    }
}
