#!/usr/bin/env bash
# Tool start-up (issue 16): how long `bin/topics.sh --list` takes against a running broker, measured with hyperfine
# next to references from the same run: the tool without its wrapper script, the same tool as an ordinary
# (JIT-compiled) .NET build, kcat -L, and a .NET hello world (the floor of any JIT-compiled .NET program).
# Starts its own broker on free ports with a fresh data dir and one topic, stops it at the end. Needs hyperfine and
# kcat (Debian packages). Not part of the test suite.
#   bench/startup.sh [--runs N] [--warmup N] [--out DIR]   (defaults: 30 runs, 3 warm-up runs, bench/results)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
runs=30 warmup=3 outdir=bench/results
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --out) outdir=$2; shift 2 ;;
    *) echo "usage: bench/startup.sh [--runs N] [--warmup N] [--out DIR]" >&2; exit 2 ;;
  esac
done
for p in hyperfine kcat; do
  command -v $p >/dev/null || { echo "bench/startup.sh: $p is missing: apt-get install -y $p" >&2; exit 1; }
done

# The tools as bin/*.sh run them (native where clang is installed), the same sources as an ordinary .NET build, and
# a hello world: all built before anything is timed.
bin/topics.sh --version >/dev/null
dotnet build src/Kiou.Cli/Kiou.Cli.csproj -c Release -o artifacts/bench-startup/cli-jit --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
hello=artifacts/bench-startup/hello
mkdir -p "$hello/src"
cat >"$hello/src/hello.csproj" <<'EOF'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <InvariantGlobalization>true</InvariantGlobalization>
    <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
  </PropertyGroup>
</Project>
EOF
echo 'System.Console.WriteLine("hello");' >"$hello/src/Program.cs"
dotnet build "$hello/src/hello.csproj" -c Release -o "$hello/out" --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2

data=$(mktemp -d /tmp/kiou-startup-bench.XXXXXX)
log=$data.log
KIOU_PORT=0 KIOU_CONTROLLER_PORT=0 KIOU_HTTP_PORT=-1 KIOU_DATA_DIR="$data" bin/kiou >"$log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$data" "$log"' EXIT
bootstrap=
for _ in $(seq 600); do
  bootstrap=$(sed -n 's/.*KIOU started: broker listener \([0-9.]*:[0-9]*\),.*/\1/p' "$log")
  [ -n "$bootstrap" ] && break
  kill -0 $broker 2>/dev/null || { cat "$log" >&2; echo "bench/startup.sh: the broker did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$bootstrap" ] || { cat "$log" >&2; echo "bench/startup.sh: the broker did not start within 60 s" >&2; exit 1; }
bin/topics.sh --bootstrap-server "$bootstrap" --create --topic startup-bench --partitions 3 >/dev/null

mkdir -p "$outdir"
result=$outdir/startup-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "Run $(date -u '+%Y-%m-%d %H:%MZ'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)."
  echo "Tools: $(artifacts/cli/kiou-cli topics --version); broker at $bootstrap with one topic; hyperfine $(hyperfine --version | cut -d' ' -f2), $warmup warm-up and $runs timed runs each, no shell (-N)."
  echo
} >"$result"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$result.json" \
  -n 'bin/topics.sh --list' "bin/topics.sh --bootstrap-server $bootstrap --list" \
  -n 'kiou-cli topics --list (no wrapper script)' "artifacts/cli/kiou-cli topics --bootstrap-server $bootstrap --list" \
  -n 'kiou-cli topics --list, JIT build' "artifacts/bench-startup/cli-jit/kiou-cli topics --bootstrap-server $bootstrap --list" \
  -n 'kcat -L' "kcat -b $bootstrap -L" \
  -n 'dotnet hello world (JIT)' "$hello/out/hello" >&2
/usr/bin/python3 - "$result.json" >>"$result" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
print("| command | median ms | mean ± σ ms | min ms | max ms | user + sys CPU ms |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    ms = lambda s: f"{s * 1000:.1f}"
    print(f"| {r['command']} | {ms(r['median'])} | {ms(r['mean'])} ± {ms(r['stddev'])} | {ms(r['min'])} | {ms(r['max'])} | {ms(r['user'] + r['system'])} |")
EOF
cat "$result"
echo "bench/startup.sh: written to $result (hyperfine's own figures: $result.json)" >&2
