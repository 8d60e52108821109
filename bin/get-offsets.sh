#!/usr/bin/env bash
# After Kafka's kafka-get-offsets.sh; --help lists the flags. See README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/kiou-cli" get-offsets "$@"
