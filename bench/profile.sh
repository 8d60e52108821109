#!/usr/bin/env bash
# Broker CPU per GB and memory for produce, with a C librdkafka producer that leaves the broker the CPU
# (docs/design/produce-cpu.md). Not part of the tests. Needs gcc and Debian's librdkafka-dev; --perf needs perf.
#   bench/profile.sh [--broker PATH] [--acks 1|all] [--flush roll|always] [--clients N] [--records N] [--size B]
#                    [--perf FILE] [--env K=V]...
# Prints: MB/s, broker CPU-s/GB (user, system), idle RSS, peak RSS (VmHWM). With --perf, a cpu-clock call-graph
# profile of the broker over the measured run (read it with perf report -i FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
broker=artifacts/kiou/kiou acks=1 flush=roll clients=1 records=1000000 size=1024 perfout="" envs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --broker) broker=$2; shift 2 ;;
    --acks) acks=$2; shift 2 ;;
    --flush) flush=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --records) records=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --perf) perfout=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    *) echo "unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
if [[ "$broker" == artifacts/kiou/kiou ]]; then
  dotnet build src/Kiou.Broker/Kiou.Broker.csproj -c Release -o artifacts/kiou --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
fi
work=$(mktemp -d)
pid=""
# The broker finishes its writes after SIGTERM: wait for it before removing its data dir.
trap '[[ -n "$pid" ]] && { kill "$pid" 2>/dev/null; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; }; rm -rf "$work"' EXIT
cat > "$work/prod.c" <<'C'
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
static long delivered, failed;
static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *o) { if (m->err) failed++; else delivered++; }
int main(int argc, char **argv) {
  long count = atol(argv[3]); int size = atoi(argv[4]); char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  const char *kv[][2] = {{"bootstrap.servers", argv[1]}, {"acks", argv[5]}, {"linger.ms", "5"}, {"batch.size", "1048576"},
    {"queue.buffering.max.kbytes", "1048576"}, {"queue.buffering.max.messages", "2000000"}, {"enable.idempotence", "false"}};
  for (unsigned i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) { fprintf(stderr, "%s\n", err); return 2; }
  rd_kafka_conf_set_dr_msg_cb(c, dr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
  if (!rk) { fprintf(stderr, "%s\n", err); return 2; }
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, argv[2], NULL);
  char *buf = malloc(size); for (int i = 0; i < size; i++) buf[i] = 'a' + i % 26;
  for (long i = 0; i < count; i++) {
    while (rd_kafka_produce(t, 0, RD_KAFKA_MSG_F_COPY, buf, size, NULL, 0, NULL) == -1) rd_kafka_poll(rk, 1);
    if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 120000);
  if (failed || delivered != count) fprintf(stderr, "delivered %ld of %ld, %ld failed\n", delivered, count, failed);
  rd_kafka_topic_destroy(t); rd_kafka_destroy(rk);
  return failed || delivered != count;
}
C
gcc -O2 -o "$work/prod" "$work/prod.c" -lrdkafka
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env KIOU_PORT="$port" KIOU_CONTROLLER_PORT=0 KIOU_HTTP_PORT=-1 KIOU_DATA_DIR="$work/data" KIOU_FLUSH="$flush" \
  DOTNET_PerfMapEnabled="${perfout:+1}" DOTNET_EnableWriteXorExecute="${perfout:+0}" "${envs[@]}" "$broker" >"$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 100); do kcat -b "127.0.0.1:$port" -L >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
idle=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
"$work/prod" "127.0.0.1:$port" p $((records / 5 + 1)) "$size" "$acks" # warm-up: JIT, pools, topic
if [[ -n "$perfout" ]]; then perf record -F 1999 -e cpu-clock -g -p "$pid" -o "$perfout" 2>/dev/null & perfpid=$!; sleep 0.5; fi
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
t0=$(date +%s.%N)
producers=()
for _ in $(seq "$clients"); do "$work/prod" "127.0.0.1:$port" p "$records" "$size" "$acks" & producers+=($!); done
for p in "${producers[@]}"; do wait "$p"; done
t1=$(date +%s.%N)
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
[[ -n "$perfout" ]] && { kill -INT "$perfpid"; wait "$perfpid" || true; }
hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
python3 - "$u0" "$s0" "$u1" "$s1" "$t0" "$t1" $((clients * records * size)) "$(getconf CLK_TCK)" "$idle" "$hwm" <<'PY'
import sys
u0, s0, u1, s1 = (int(x) for x in sys.argv[1:5]); t0, t1 = float(sys.argv[5]), float(sys.argv[6])
gb = int(sys.argv[7]) / 1e9; tck = int(sys.argv[8]); idle, hwm = int(sys.argv[9]), int(sys.argv[10])
user, system = (u1 - u0) / tck / gb, (s1 - s0) / tck / gb
print(f"{gb / (t1 - t0) * 1000:.0f} MB/s, broker {user + system:.2f} CPU-s/GB (user {user:.2f}, system {system:.2f}), "
      f"idle RSS {idle // 1024} MiB, peak RSS {hwm // 1024} MiB")
PY
