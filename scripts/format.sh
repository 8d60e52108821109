#!/usr/bin/env bash
# Formatting over `dotnet format` and .editorconfig.
#   scripts/format.sh --fix     rewrite files in place
#   scripts/format.sh --check   exit non-zero if anything would change (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:---check}"
case "$mode" in
  --fix)   dotnet format whitespace Kiou.sln ;;
  --check) dotnet format whitespace Kiou.sln --verify-no-changes ;;
  *) echo "usage: scripts/format.sh --fix|--check" >&2; exit 2 ;;
esac
