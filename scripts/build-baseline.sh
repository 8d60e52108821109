#!/usr/bin/env bash
# Builds the broker of an older commit (for bench/run.sh --baseline) into artifacts/baseline-<sha>/ and prints the
# path of its executable. The commit is checked out in a temporary worktree; the current checkout is not touched.
#   scripts/build-baseline.sh REF      e.g. scripts/build-baseline.sh main~3
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:?usage: scripts/build-baseline.sh REF}"
sha="$(git rev-parse --short=12 "$ref^{commit}")"
out="$PWD/artifacts/baseline-$sha"
if [[ ! -x "$out/kiou" ]]; then
    tree="$(mktemp -d)"
    trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT
    git worktree add -q --detach "$tree" "$sha"
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
    dotnet build "$tree/src/Kiou.Broker/Kiou.Broker.csproj" -c Release -o "$out" --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
fi
echo "$out/kiou"
