#!/usr/bin/env bash
# Runs the whole test suite: unit, codec, storage, ring, and integration tests with real clients
# (Confluent.Kafka/librdkafka from NuGet, kcat, kafka-python and confluent-kafka-python from Debian, KafkaJS from npm). The broker tests
# run twice: with the io_uring append path (KIOU_IO=auto: io_uring where the kernel allows it) and with the
# synchronous pwrite path (KIOU_IO=sync), the second time also with the copying fetch path
# (KIOU_FETCH_ZERO_COPY=false); the SASL client matrix (SaslTests: authentication, no I/O path of its own) runs once.
# Prints one closing line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
command -v kcat >/dev/null || { echo "kcat is missing: apt-get install -y kcat" >&2; exit 1; }
/usr/bin/python3 -c 'import kafka' 2>/dev/null || { echo "kafka-python is missing: apt-get install -y python3-kafka" >&2; exit 1; }
/usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null || { echo "confluent-kafka-python is missing: apt-get install -y python3-confluent-kafka" >&2; exit 1; }
command -v node >/dev/null || { echo "Node.js is missing (for KafkaJS): apt-get install -y nodejs npm" >&2; exit 1; }
command -v clang >/dev/null || { echo "clang is missing (the native build of the command-line tools): apt-get install -y clang zlib1g-dev" >&2; exit 1; }
if [ ! -d tests/compat/node_modules/kafkajs ]; then
  (cd tests/compat && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm could not install KafkaJS (tests/compat)" >&2; exit 1; }
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
dotnet build Kiou.sln -c Release --nologo -v quiet "-clp:ErrorsOnly;NoSummary" || exit 1
rc=0
echo "== all tests, KIOU_IO=${KIOU_IO:-auto}"
dotnet test Kiou.sln -c Release --no-build --nologo 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
echo "== broker tests again, KIOU_IO=sync KIOU_FETCH_ZERO_COPY=false"
KIOU_IO=sync KIOU_FETCH_ZERO_COPY=false dotnet test tests/Kiou.Broker.Tests -c Release --no-build --nologo --filter "FullyQualifiedName!~Kiou.Broker.Tests.SaslTests" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
passed=$(grep -Eo 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -Eo 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
skipped=$(grep -Eo 'Skipped: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
