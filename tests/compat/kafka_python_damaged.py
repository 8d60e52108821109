#!/usr/bin/python3
"""kafka-python (Debian's python3-kafka) at damaged offsets of a partition (docs/design/recovery.md).

Usage: kafka_python_damaged.py BOOTSTRAP TOPIC DAMAGED_OFFSET NEXT_OFFSET END_OFFSET
Partition 0 of TOPIC is damaged at DAMAGED_OFFSET; NEXT_OFFSET is the first readable offset after the damage and
END_OFFSET the log end. Record i has key bytes([i]) and value bytes([i]) * 100.
Prints one "ok: ..." line per step and exits 0; any failure raises (exit 1).
Run by tests/Kiou.Broker.Tests/RecoveryTests.cs.
"""
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordException

bootstrap, topic = sys.argv[1], sys.argv[2]
damaged, nxt, end = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         consumer_timeout_ms=10000, check_crcs=True)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek(tp, damaged)
deadline = time.time() + 20
raised = None
while raised is None and time.time() < deadline:
    try:
        batch = consumer.poll(timeout_ms=500)
        assert not batch.get(tp), "records returned at a damaged offset: %r" % batch
    except CorruptRecordException as e:
        raised = e
assert raised is not None, "no CorruptRecordException within 20 s"
print("ok: CorruptRecordException at offset %d (%s)" % (damaged, raised))

consumer.seek(tp, nxt)
got = []
deadline = time.time() + 20
while len(got) < end - nxt and time.time() < deadline:
    for records in consumer.poll(timeout_ms=500).values():
        got.extend(records)
assert [r.offset for r in got] == list(range(nxt, end)), [r.offset for r in got]
for r in got:
    assert r.key == bytes([r.offset]) and r.value == bytes([r.offset]) * 100, (r.offset, r.key, r.value)
print("ok: read offsets %d..%d after seeking past the damage" % (nxt, end - 1))
consumer.close()
