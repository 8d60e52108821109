#!/usr/bin/env python3
"""librdkafka's test 0030 in small: 50 asynchronous OffsetCommits sent back to back must leave the last one
committed. Uses confluent-kafka-python (Debian's python3-confluent-kafka, on Debian's librdkafka).
Usage: async_commits.py BOOTSTRAP TOPIC"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
COMMITS = 50
ROUNDS = 5

producer = Producer({"bootstrap.servers": bootstrap})
for i in range(COMMITS + 10):
    producer.produce(topic, b"record-%d" % i)
if producer.flush(30) != 0:
    sys.exit("not every record was delivered")
print("ok: produced", flush=True)

for r in range(ROUNDS):
    done = []
    failed = []

    def on_commit(err, partitions):
        (failed if err is not None else done).append(err)

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "async-commits-%d" % r,
        "enable.auto.commit": False,
        "on_commit": on_commit,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    for i in range(1, COMMITS + 1):
        consumer.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=True)
    deadline = time.time() + 30
    while len(done) + len(failed) < COMMITS and time.time() < deadline:
        consumer.poll(0.1)
    if failed or len(done) != COMMITS:
        sys.exit("round %d: %d commits acknowledged, %d failed: %s" % (r, len(done), len(failed), failed[:3]))
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    consumer.close()
    if committed != COMMITS:
        sys.exit("round %d: committed offset is %d after %d asynchronous commits, expected %d" % (r, committed, COMMITS, COMMITS))
print("ok: the last of %d asynchronous commits is committed, %d rounds" % (COMMITS, ROUNDS), flush=True)
