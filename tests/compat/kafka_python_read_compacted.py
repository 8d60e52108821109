#!/usr/bin/python3
"""kafka-python (Debian's python3-kafka) reads one partition of a cleaned compacted topic from the beginning to its end.

Usage: kafka_python_read_compacted.py BOOTSTRAP TOPIC
Prints one line per record, "OFFSET KEY VALUE" (key and value as text, "-" for null), then "ok: consumed N records",
and exits 0; anything else raises (exit 1). Run by tests/Kiou.Broker.Tests/CompactionCompatTests.cs: kafka-python 2.0.2
raises IndexError on a fetch response holding only batches without records (dpkp/kafka-python#2132), which a cleaned
segment ends with.
"""
import sys

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         consumer_timeout_ms=15000, check_crcs=True)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
end = consumer.end_offsets([tp])[tp]
lines = []
last = -1
for record in consumer:
    assert record.offset > last, "offset %d after %d" % (record.offset, last)
    last = record.offset
    key = "-" if record.key is None else record.key.decode()
    value = "-" if record.value is None else record.value.decode()
    lines.append("%d %s %s" % (record.offset, key, value))
    if record.offset + 1 >= end:
        break
consumer.close()
assert last + 1 == end, "stopped at offset %d, the end offset is %d" % (last, end)
print("\n".join(lines))
print("ok: consumed %d records" % len(lines))
