#!/usr/bin/env bash
# KIOU's benchmark, one command: builds the broker and the driver in Release, then measures the machine's
# reference figures and the broker under librdkafka load in the same run. Not part of the test suite.
#   bench/run.sh --suite io     io_uring vs sync append path (issue: io_uring append path)
#   bench/run.sh --suite all    the six scenarios of BENCHMARKS.md
#   bench/run.sh --suite latency  end-to-end latency at 10,000 rec/s per write mode (uring, uring-ring, sync)
#   bench/run.sh --suite reqpath  produce and consume with KIOU_FETCH_ZERO_COPY=false and true (request path)
#   bench/run.sh --suite tls  produce and consume 1 KiB over PLAINTEXT and SSL listeners of one broker (C driver, openssl)
#   bench/run.sh --suite idempotence  plain vs idempotent produce, 1 KiB and 100 B, acks=all: librdkafka, a raw-protocol
#     driver (the broker's own cost) and librdkafka's mock cluster (the client's ceiling); --only raw|mock|"1 KiB"
#   bench/run.sh --suite validate [--baseline BROKER]  compressed 1 KiB produce per codec (produce-time validation);
#     BROKER: a build of other code (e.g. before a change) run row by row against this one
#   bench/run.sh --suite compare --baseline BROKER  produce/consume/durable/latency rows, this build against BROKER
#     (build BROKER from an older commit: scripts/build-baseline.sh REF prints its path)
#   bench/run.sh --suite compaction  the log cleaner: MB/s and CPU-s/GB cleaning a dirty compacted log (uncompressed,
#     zstd), and produce latency p99 with the cleaner off and cleaning; --only none|zstd|latency
#   bench/run.sh --suite targets  every target of issue 18 with its ratio: produce 100 B / 1 KiB against librdkafka's mock
#     cluster (the client's ceiling), broker CPU-s/GB, catch-up consume of data not in the page cache against the cold
#     disk read and warm consume, a consumer 64 MiB behind, warm consume against loopback, RSS, latency, 1,000 partitions;
#     driven by bench/perf/kiou-perf.c (C, librdkafka's batch API; built here with gcc and Debian's librdkafka-dev).
#     --rounds N (default 3), --clients N (producer instances per produce run, default 1), --quick (a fifth of the data),
#     --only LIST (comma-separated sections: rss, produce, durable, consume, latency)
# Options: --quick (a fifth of the records), --out DIR (default bench/results), --data-dir DIR (default /tmp),
#   --rounds N (io suite: rounds per row, the modes alternating, medians reported; default 3), --only TEXT (io suite:
#   only rows whose name contains TEXT; reqpath suite: false or true, one fetch mode), --threads (io suite: broker CPU
#   per thread name after each run, on stderr), --modes LIST (io suite: default uring,sync; uring-inline is
#   KIOU_IO=uring with KIOU_URING_WRITES=inline), --clients N (io suite: producer instances per run, default 2; one
#   producer of 100 B records is limited by librdkafka, see BENCHMARKS.md), --driver c (io, latency, reqpath, all and
#   compare suites: load from the C driver artifacts/kiou-perf instead of Confluent.Kafka), --perf PATH (the C driver).
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Kiou.Broker/Kiou.Broker.csproj -c Release -o artifacts/kiou --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
# The C driver (bench/perf/kiou-perf.c) where gcc and Debian's librdkafka-dev are installed; --suite targets needs it.
mkdir -p artifacts
if command -v gcc >/dev/null && [ -f /usr/include/librdkafka/rdkafka.h ]; then
  gcc -O2 -Wall -Wextra -Werror -o artifacts/kiou-perf bench/perf/kiou-perf.c -lrdkafka -lpthread >&2
else
  echo "bench/run.sh: no gcc or librdkafka-dev: artifacts/kiou-perf (the C driver, --suite targets) is not built" >&2
fi
dotnet build bench/Kiou.Bench/Kiou.Bench.csproj -c Release -o artifacts/bench --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
exec dotnet artifacts/bench/Kiou.Bench.dll --broker artifacts/kiou/kiou "$@"
