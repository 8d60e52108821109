#!/usr/bin/env bash
# The idempotence soak: the broker test IdempotentClientTests (librdkafka with enable.idempotence=true and acks=all,
# records to 4 partitions through a proxy that cuts connections at random and all at once every 8000 acknowledgements;
# every record must be read back exactly once per partition, in the order sent) with as many records as asked, and the
# kill -9 loop under an idempotent producer (KIOU_FLUSH=always) with as many cycles as asked.
# CI runs the same tests with 100000 records and 6 cycles.
#   scripts/soak-idempotence.sh --records 1000000 --cycles 50     # KIOU_IO=sync|uring|auto is passed through
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
records=1000000
cycles=20
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="${2:?--records needs a number}"; shift 2 ;;
    --cycles) cycles="${2:?--cycles needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (use --records N --cycles N)" >&2; exit 2 ;;
  esac
done
for v in "$records" "$cycles"; do
  case "$v" in ''|*[!0-9]*|0) echo "--records and --cycles must be numbers above 0" >&2; exit 2 ;; esac
done
dotnet build tests/Kiou.Broker.Tests -c Release --nologo -v quiet "-clp:ErrorsOnly;NoSummary" || exit 1
echo "== idempotence soak: $records records through the chaos proxy, $cycles kill -9 cycles, KIOU_IO=${KIOU_IO:-auto}"
KIOU_IDEMPOTENCE_RECORDS="$records" KIOU_IDEMPOTENCE_CYCLES="$cycles" \
  dotnet test tests/Kiou.Broker.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~IdempotentClientTests" \
  --logger "console;verbosity=detailed" -- "RunConfiguration.TestSessionTimeout=$(( (records / 1000 + cycles * 10 + 900) * 1000 ))" \
  | grep -v '^%[0-9]|' 
exit "${PIPESTATUS[0]}"
