#!/usr/bin/env bash
# After Kafka's kafka-console-producer.sh; --help lists the flags. See README.md.
# Sourced rather than run: one shell fewer at every start.
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
. "$here/kiou-cli" producer "$@"
