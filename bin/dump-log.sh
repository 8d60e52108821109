#!/usr/bin/env bash
# After Kafka's kafka-dump-log.sh: reads segment and index files offline; --help lists the flags. See README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/kiou-cli" dump-log "$@"
