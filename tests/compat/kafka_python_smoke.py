#!/usr/bin/python3
"""kafka-python (Debian's python3-kafka) against a broker: metadata, admin, produce, consume, offsets.

Usage: kafka_python_smoke.py BOOTSTRAP TOPIC
Prints one "ok: ..." line per step on stdout and exits 0; any failure raises (exit 1) with the reason on stderr.
Run by tests/Kiou.Broker.Tests/CompatTests.cs.
"""
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

bootstrap, topic = sys.argv[1], sys.argv[2]
N = 2000

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kafka-python", request_timeout_ms=10000)
admin.create_topics([NewTopic(name=topic, num_partitions=2, replication_factor=1)])
assert topic in admin.list_topics(), "created topic missing from list_topics"
print("ok: create_topics and list_topics")

producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip", linger_ms=5)
t0 = int(time.time() * 1000) - 100_000
futures = []
for i in range(N):
    futures.append(producer.send(topic, key=b"k%d" % i, value=b"value %d" % i, partition=i % 2,
                                 headers=[("h", b"%d" % i)], timestamp_ms=t0 + i))
producer.flush(30)
acked = [f.get(timeout=30) for f in futures]
for i, md in enumerate(acked):
    assert md.partition == i % 2, (i, md)
    assert md.offset == i // 2, ("offset", i, md.offset)
producer.close()
print("ok: produced %d records with acks=all, gzip, keys and headers" % N)

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         consumer_timeout_ms=10000)
tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
got = {0: [], 1: []}
while len(got[0]) + len(got[1]) < N:
    batch = consumer.poll(timeout_ms=10000)
    assert batch, "poll returned nothing before all records arrived (%d so far)" % (len(got[0]) + len(got[1]))
    for tp, records in batch.items():
        got[tp.partition].extend(records)
for p in (0, 1):
    for j, r in enumerate(got[p]):
        i = 2 * j + p
        assert r.offset == j, ("offset", p, j, r.offset)
        assert r.key == b"k%d" % i and r.value == b"value %d" % i, (p, j, r.key, r.value)
        assert r.headers == [("h", b"%d" % i)], (p, j, r.headers)
        assert r.timestamp == t0 + i, (p, j, r.timestamp)
print("ok: consumed every record back byte for byte")

end = consumer.end_offsets(tps)
assert end[tps[0]] == N // 2 and end[tps[1]] == N // 2, end
begin = consumer.beginning_offsets(tps)
assert begin[tps[0]] == 0 and begin[tps[1]] == 0, begin
# Batches are gzip-compressed: a time lookup may answer with the first offset of the batch holding the record.
found = consumer.offsets_for_times({tps[0]: t0 + 1000})
assert 0 <= found[tps[0]].offset <= 500, found
print("ok: end_offsets, beginning_offsets and offsets_for_times")
consumer.close()

admin.delete_topics([topic])
deadline = time.time() + 10
while topic in admin.list_topics():
    assert time.time() < deadline, "deleted topic still listed"
    time.sleep(0.1)
admin.close()
print("ok: delete_topics")
