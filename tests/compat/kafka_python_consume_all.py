#!/usr/bin/python3
"""kafka-python (Debian's python3-kafka) reads one partition from the beginning to its end.

Usage: kafka_python_consume_all.py BOOTSTRAP TOPIC EXPECTED_COUNT
Checks that every record arrives (values "good-N" in order) with no error, prints "ok: consumed N records" and exits
0; anything else raises (exit 1). Run by tests/Kiou.Broker.Tests/PoisonBatchTests.cs after poison batches were sent
to the partition: a poison batch the broker stored would make kafka-python raise on it or never reach the end.
"""
import sys

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         consumer_timeout_ms=15000, check_crcs=True)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
end = consumer.end_offsets([tp])[tp]
assert end == expected, "end offset %d, expected %d" % (end, expected)
values = []
for record in consumer:
    values.append(record.value)
    if record.offset + 1 >= end:
        break
consumer.close()
want = [b"good-%d" % i for i in range(expected)]
assert values == want, "got %r" % values[:10]
print("ok: consumed %d records" % len(values))
