#!/usr/bin/env bash
# The kill -9 soak: the broker test KillLoopTests (start the broker, produce numbered records with acks=all and
# idempotence off, SIGKILL at a random moment, restart; at the end every acknowledged record must be there exactly
# as sent, consumed with librdkafka check.crcs=true, and every batch of every segment file must pass its CRC) with
# as many cycles as asked. CI runs the same test with 50 cycles.
#   scripts/soak-crash.sh --cycles 5000            # KIOU_IO=sync|uring|auto is passed through
# Prints one closing line with the counts: cycles, records acknowledged, lost, batches checked.
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cycles=500
while [ $# -gt 0 ]; do
  case "$1" in
    --cycles) cycles="${2:?--cycles needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (use --cycles N)" >&2; exit 2 ;;
  esac
done
case "$cycles" in ''|*[!0-9]*|0) echo "--cycles must be a number above 0" >&2; exit 2 ;; esac
report=$(mktemp)
trap 'rm -f "$report"' EXIT
dotnet build tests/Kiou.Broker.Tests -c Release --nologo -v quiet "-clp:ErrorsOnly;NoSummary" || exit 1
echo "== kill -9 soak: $cycles cycles, KIOU_IO=${KIOU_IO:-auto}"
KIOU_CRASH_CYCLES="$cycles" KIOU_CRASH_REPORT="$report" \
  dotnet test tests/Kiou.Broker.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~KillLoopTests" \
  -- "RunConfiguration.TestSessionTimeout=$(( (cycles * 10 + 600) * 1000 ))"
rc=$?
if [ -s "$report" ]; then
  cat "$report"
else
  echo "kill -9 soak: no summary (the test failed before it finished; see above)"
fi
exit "$rc"
