#!/usr/bin/env bash
# After Kafka's kafka-topics.sh; --help lists the flags. See README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/kiou-cli" topics "$@"
