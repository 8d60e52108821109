#!/usr/bin/env bash
# After Kafka's kafka-delete-records.sh; --help lists the flags. See README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/kiou-cli" delete-records "$@"
