#!/usr/bin/env bash
# librdkafka's own integration test suite (its tests/ directory) against a KIOU broker on this machine.
# Builds librdkafka and its test runner in SRC_DIR (a plain source tree, e.g. `git archive` of confluentinc/librdkafka;
# nothing is downloaded), starts a KIOU broker on free ports with a fresh data dir, and runs each selected test number
# with ./test-runner under a timeout. Prints one line per test (number and name, PASSED/FAILED/SKIPPED, reason) and a
# summary; logs go to --out (default /tmp/librdkafka-tests-<time>). Results are written up in docs/testing/librdkafka-suite.md.
#   scripts/librdkafka-tests.sh SRC_DIR [--tests 0001,0103,...] [--broker BINARY] [--jobs N] [--timeout SECS]
#                                       [--quick] [--rf1] [--kafka-version 3.9.0] [--out DIR] [--list]
#   LIBRDKAFKA_SRC may stand for SRC_DIR. --tests takes test numbers (0103) or names (0103_transactions);
#   without it every test that applies to one node runs (--list prints them and the excluded ones with reasons).
#   --broker: a built kiou binary; without it src/Kiou.Broker is built into artifacts/kiou.
#   --timeout: seconds per test number (default 1200). --jobs N runs N test numbers at once against the same broker (topics are named per test run, so they do not meet).
#   Tests that run Kafka's bin/kafka-topics.sh get KIOU's bin/topics.sh (same flags) through KAFKA_PATH; the ones
#   that run bin/kafka-acls.sh find none and fail there (KIOU has no authorizer).
#   The broker gets KIOU_NUM_PARTITIONS=4 (tests such as 0029, 0054 and 0122 produce to partition 3 of an auto-created
#   topic) and KIOU_GROUP_INITIAL_REBALANCE_DELAY_MS=3000 (Kafka's default, which the trivup clusters of librdkafka's
#   CI leave alone; tests count rebalances and expect consumers that subscribe together to join one) unless the
#   environment sets them; other KIOU_* settings in the environment pass through.
#   --rf1 patches 0103_transactions, 0107_topic_recreate and 0111_delay_create_topics in SRC_DIR (originals kept as
#   *.orig) to create their topics with replication factor 1 instead of 3, the only change, so that they run on one
#   node; their rows are marked "(rf 1)".
#   --quick passes -Q (fewer messages, shorter waits). Tests of the "noautocreate" scenario run against a second
#   broker started with KIOU_AUTO_CREATE_TOPICS=false.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

src="${LIBRDKAFKA_SRC:-}"
tests_arg=""
broker=""
jobs=1
per_test_timeout=1200 # 0113_cooperative_rebalance alone runs for many minutes on a busy machine
quick=""
kafka_version="3.9.0"
out=""
list_only=0
rf1=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) tests_arg="${2:?--tests needs a list}"; shift 2 ;;
    --broker) broker="${2:?--broker needs a path}"; shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    --timeout) per_test_timeout="${2:?--timeout needs seconds}"; shift 2 ;;
    --quick) quick="-Q"; shift ;;
    --kafka-version) kafka_version="${2:?--kafka-version needs a version}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --list) list_only=1; shift ;;
    --rf1) rf1=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    *) src="$1"; shift ;;
  esac
done
[ -n "$src" ] || { echo "give the librdkafka source directory (argument or LIBRDKAFKA_SRC)" >&2; exit 2; }
src="$(cd "$src" 2>/dev/null && pwd)" || { echo "no such directory: $src" >&2; exit 2; }
[ -f "$src/tests/test.c" ] && [ -f "$src/configure" ] || { echo "$src is not a librdkafka source tree (tests/test.c, configure)" >&2; exit 2; }
for v in "$jobs" "$per_test_timeout"; do
  case "$v" in ''|*[!0-9]*|0) echo "--jobs and --timeout must be numbers above 0" >&2; exit 2 ;; esac
done

# Tests the broker cannot be asked to pass on one node without SASL/SSL/ACLs/Java. Everything else that is not
# TEST_F_LOCAL (no broker: unit tests and the mock cluster), TEST_F_MANUAL or TEST_F_KNOWN_ISSUE, and whose minimum
# broker version is not above --kafka-version, is run. A test may still skip itself at run time (its reason is shown).
excluded() {
  cat <<'EOF'
0097_ssl_verify|needs an SSL listener with the test CA (KIOU has no TLS)
0098_consumer_txn|needs Java: drives the java/ TransactionProducerCli helper from a Kafka source tree (KAFKA_PATH)
0101_fetch_from_follower|needs several brokers in different racks (KIP-392 follower fetching)
0107_topic_recreate|needs three brokers: creates its topics with replication factor 3
0111_delay_create_topics|needs three brokers: creates its topic with replication factor 3
0115_producer_auth|needs an ACL authorizer (CreateAcls denying the producer)
0119_consumer_auth|needs an ACL authorizer (CreateAcls denying the consumer)
0126_oauthbearer_oidc|needs SASL/OAUTHBEARER with an OIDC token endpoint
0135_sasl_credentials|needs SASL (sasl.username/password)
0142_reauthentication|needs SASL (KIP-368 re-authentication)
0139_offset_validation_mock|mock cluster only (creates its own in-process cluster; the broker is not contacted)
0150_telemetry_mock|mock cluster only (creates its own in-process cluster; the broker is not contacted)
EOF
}

# All tests declared in tests/test.c with flags, minimum version and scenario: "name|flags|minver|scenario".
declared_tests() {
  python3 - "$src/tests/test.c" <<'EOF'
import re, sys
s = open(sys.argv[1]).read()
s = s[s.index("struct test tests[] = {"):]
s = s[:s.index("{NULL}")]
s = re.sub(r"/\*.*?\*/", "", s, flags=re.S)
for m in re.finditer(r"_TEST\((\w+),", s):
    # the entry runs to the matching close parenthesis
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(s[i], 0); i += 1
    body = s[m.end():i - 1]
    flags = body.split(",")[0].strip()
    v = re.search(r"TEST_BRKVER\((\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)", body)
    if "TEST_BRKVER_TOPIC_ADMINAPI" in body: v = ("0", "10", "2", "0")
    elif v: v = v.groups()
    else: v = ("0", "0", "0", "0")
    sc = re.search(r'\.scenario\s*=\s*"([^"]*)"', body)
    print("%s|%s|%s|%s" % (m.group(1), flags, ".".join(v), sc.group(1) if sc else "default"))
EOF
}

ver_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$1" ]; }

# name|scenario of each test to run, in order
select_tests() {
  local exl; exl="$(excluded | cut -d'|' -f1)"
  declared_tests | while IFS='|' read -r name flags minver scenario; do
    if [ -n "$tests_arg" ]; then
      local hit=0 t
      for t in ${tests_arg//,/ }; do
        case "$name" in "$t"|"$t"_*) hit=1 ;; esac
      done
      [ "$hit" = 1 ] || continue
    else
      grep -qx "$name" <<<"$exl" && { [ "$rf1" = 1 ] && grep -q "^$name|needs three brokers" < <(excluded) || continue; }
    fi
    case "$flags" in *TEST_F_LOCAL*|*TEST_F_MANUAL*) continue ;; esac
    case "$flags" in *TEST_F_KNOWN_ISSUE_WIN32*|*TEST_F_KNOWN_ISSUE_OSX*) ;; *TEST_F_KNOWN_ISSUE*) continue ;; esac
    ver_le "$minver" "$kafka_version" || continue
    case ",$scenario," in *,default,*|*,noautocreate,*) ;; *) continue ;; esac
    case ",$scenario," in *,default,*) echo "$name|default" ;; *) echo "$name|noautocreate" ;; esac
  done
}

if [ "$list_only" = 1 ]; then
  echo "== tests that apply to one node (broker version $kafka_version):"
  select_tests | sed 's/|default$//; s/|noautocreate$/  (scenario noautocreate: auto-create off)/'
  echo "== excluded by hand:"
  excluded | sed 's/|/: /'
  echo "== not run: TEST_F_LOCAL (no broker), TEST_F_MANUAL, TEST_F_KNOWN_ISSUE, minimum version above $kafka_version:"
  declared_tests | while IFS='|' read -r name flags minver scenario; do
    r=""
    case "$flags" in *TEST_F_LOCAL*) r="local" ;; *TEST_F_MANUAL*) r="manual" ;; esac
    case "$flags" in *TEST_F_KNOWN_ISSUE_WIN32*|*TEST_F_KNOWN_ISSUE_OSX*) ;; *TEST_F_KNOWN_ISSUE*) r="${r:-known issue}" ;; esac
    [ -z "$r" ] && ! ver_le "$minver" "$kafka_version" && r="needs Kafka $minver"
    [ -n "$r" ] && echo "$name: $r"
  done
  exit 0
fi

# ---- build librdkafka and the test runner
need_pkgs=""
for p in build-essential python3 rapidjson-dev libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev libcurl4-openssl-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs="$need_pkgs $p"
done
if [ -n "$need_pkgs" ]; then
  echo "== installing build dependencies:$need_pkgs"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q $need_pkgs >/dev/null || exit 1
  else sudo apt-get install -y -q $need_pkgs >/dev/null || exit 1; fi
fi
out="${out:-/tmp/librdkafka-tests-$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$out/logs" || exit 1
rf3_files="0103-transactions.c 0107-topic_recreate.c 0111-delay_create_topics.cpp"
rebuild=0
if [ "$rf1" = 1 ]; then
  for f in $rf3_files; do
    [ -f "$src/tests/$f.orig" ] || cp -p "$src/tests/$f" "$src/tests/$f.orig" || exit 1
    sed -E 's/(test_create_topic_wait_exists\([^;]*), 3, ([0-9]+)\)/\1, 1, \2)/; s/(Test::create_topic\([^;]*), 3\);/\1, 1);/' \
      "$src/tests/$f.orig" >"$src/tests/$f.rf1"
    cmp -s "$src/tests/$f.rf1" "$src/tests/$f" && rm "$src/tests/$f.rf1" || { mv "$src/tests/$f.rf1" "$src/tests/$f"; rebuild=1; }
  done
else
  for f in $rf3_files; do
    if [ -f "$src/tests/$f.orig" ] && ! cmp -s "$src/tests/$f.orig" "$src/tests/$f"; then cp "$src/tests/$f.orig" "$src/tests/$f"; rebuild=1; fi
  done
fi
if [ ! -x "$src/tests/test-runner" ] || [ "$rebuild" = 1 ]; then
  echo "== building librdkafka in $src (log: $out/build.log)"
  (
    cd "$src" || exit 1
    [ -f Makefile.config ] || ./configure || exit 1
    make -j2 libs || exit 1
    make -C tests build
  ) >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; echo "librdkafka build failed" >&2; exit 1; }
fi
rdk_version="$(sed -n 's/^#define RD_KAFKA_VERSION *0x\([0-9a-f]*\).*/\1/p' "$src/src/rdkafka.h")"

if [ -z "$broker" ]; then
  echo "== building the broker into $repo/artifacts/kiou"
  dotnet build "$repo/src/Kiou.Broker/Kiou.Broker.csproj" -c Release -o "$repo/artifacts/kiou" --nologo -v quiet \
    "-clp:ErrorsOnly;NoSummary" || exit 1
  broker="$repo/artifacts/kiou/kiou"
fi
[ -x "$broker" ] || { echo "broker binary not executable: $broker" >&2; exit 2; }

# Kafka's shell tools as the tests call them ($KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server $BROKERS ...)
mkdir -p "$out/kafka/bin"
printf '#!/bin/sh\nexec "%s/bin/topics.sh" "$@"\n' "$repo" >"$out/kafka/bin/kafka-topics.sh"
chmod +x "$out/kafka/bin/kafka-topics.sh"
"$repo/bin/topics.sh" --help >/dev/null 2>&1 # the first run builds the tools; not while tests are timed

# ---- broker
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
broker_pid=""
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
    broker_pid=""
    rm -rf "$data" # the broker's log stays in --out
  fi
}
trap stop_broker EXIT
trap 'exit 130' INT TERM
start_broker() { # $1 = label, $2 = auto-create (true|false)
  port="$(free_port)"; cport="$(free_port)"
  data="$(mktemp -d /tmp/librdkafka-tests-data.XXXXXX)"
  KIOU_PORT="$port" KIOU_CONTROLLER_PORT="$cport" KIOU_DATA_DIR="$data" KIOU_AUTO_CREATE_TOPICS="$2" \
  KIOU_NUM_PARTITIONS="${KIOU_NUM_PARTITIONS:-4}" \
  KIOU_GROUP_INITIAL_REBALANCE_DELAY_MS="${KIOU_GROUP_INITIAL_REBALANCE_DELAY_MS:-3000}" "$broker" >"$out/broker-$1.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    kill -0 "$broker_pid" 2>/dev/null || { tail -20 "$out/broker-$1.log"; echo "broker exited" >&2; exit 1; }
    sleep 0.1
  done
  cat >"$out/test-$1.conf" <<EOF
bootstrap.servers=127.0.0.1:$port
test.timeout.multiplier=${TEST_TIMEOUT_MULTIPLIER:-2}
EOF
  echo "== broker ($1): $broker on 127.0.0.1:$port, data $data, auto-create $2, log $out/broker-$1.log"
}

# ---- run: one test-runner process per test number; -L leaves out the number's local/mock tests
run_number() { # $1 = test number, $2 = scenario, $3 = conf, $4 = bootstrap servers
  local log="$out/logs/$1-$2.log" rc
  # the built library, not one the system may have installed
  (cd "$src/tests" && LD_LIBRARY_PATH="$src/src:$src/src-cpp" KAFKA_PATH="$out/kafka" BROKERS="$4" TESTS="$1" TEST_KAFKA_VERSION="$kafka_version" RDKAFKA_TEST_CONF="$3" TEST_LEVEL=2 \
    timeout -k 10 "$per_test_timeout" ./test-runner -L -K -p1 -s "$2" $quick) >"$log" 2>&1
  rc=$?
  echo "$rc" >"$log.rc"
}
export -f run_number
export src out kafka_version per_test_timeout quick

results="$out/results.txt"
: >"$results"
run_scenario() { # $1 = scenario
  local sel nums
  sel="$(select_tests | awk -F'|' -v s="$1" '$2==s {print $1}')"
  [ -n "$sel" ] || return 0
  nums="$(sed 's/_.*//' <<<"$sel" | uniq)"
  start_broker "$1" "$([ "$1" = noautocreate ] && echo false || echo true)"
  echo "$nums" | xargs -P "$jobs" -I{} bash -c "run_number {} $1 $out/test-$1.conf 127.0.0.1:$port" 2>>"$out/runner-stderr.log"
  stop_broker
  # one line per test from the runner's summary table; a runner that timed out or crashed fails what it did not report
  local name num log rc line state reason
  for name in $sel; do
    num="${name%%_*}"; log="$out/logs/$num-$1.log"; rc="$(cat "$log.rc" 2>/dev/null || echo '?')"
    line="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E "^\| $name +\|" | tail -1)"
    if [ -n "$line" ]; then
      state="$(awk -F'|' '{gsub(/ /,"",$3); print $3}' <<<"$line")"
      reason="$(cut -d'|' -f5- <<<"$line" | sed 's/^ *//')"
    else
      # the runner aborts before its summary when a failed test leaves client threads behind: take the test's
      # first failure from the log
      state="FAILED"
      reason="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -A1 -E "^### Test \"$name[\" ]" | sed -n 2p | cut -c1-300)"
      if [ -n "$reason" ]; then :
      elif sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -qE "=+ Test $name PASSED =+"; then state="PASSED"
      elif sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -qE "^\[$name +/.*SKIPPING TEST"; then
        state="SKIPPED"; reason="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E "^\[$name +/.*SKIPPING TEST" | sed 's/.*SKIPPING TEST: //' | head -1)"
      elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then reason="no result: test-runner killed after ${per_test_timeout}s"
      else reason="no result: test-runner exited with $rc: $(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -A1 -E '^### Test .* failed' | tail -1 | cut -c1-200)"; fi
    fi
    [ "$state" = PASSED ] && reason=""
    reason="${reason//$'\t'/ }"
    printf '%s\x1f%s\x1f%s\x1f%s\n' "$name" "$state" "$reason" "$1" >>"$results"
    printf '%-50s %-8s %s\n' "$name" "$state" "$reason"
  done
}

echo "== librdkafka $src (version 0x$rdk_version), broker version given to the tests: $kafka_version, out: $out"
run_scenario default
run_scenario noautocreate
passed="$(grep -c $'\x1fPASSED\x1f' "$results")"; failed="$(grep -c $'\x1fFAILED\x1f' "$results")"; skipped="$(grep -c $'\x1fSKIPPED\x1f' "$results")"
# the same as a Markdown table for docs/testing/librdkafka-suite.md
{
  echo "| Test | Result | Reason |"
  echo "|---|---|---|"
  while IFS=$'\x1f' read -r name state reason scenario; do
    [ "$scenario" = default ] || name="$name (auto-create off)"
    [ "$rf1" = 1 ] && grep -q "^${name%% *}|needs three brokers" < <(excluded; echo "0103_transactions|needs three brokers") && name="$name (rf 1)"
    printf '| %s | %s | %s |\n' "$name" "$state" "${reason//|/\\|}"
  done <"$results"
} >"$out/results.md"
echo "== summary: $(wc -l <"$results") tests, $passed passed, $failed failed, $skipped skipped (results: $results and results.md, logs: $out/logs)"
[ "$failed" = 0 ]
