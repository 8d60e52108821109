#!/usr/bin/python3
"""kafka-python (Debian's python3-kafka 2.0.2) pinned to an old protocol generation, for the legacy message formats.

Usage:
  kafka_python_legacy.py BOOTSTRAP TOPIC API_VERSION produce CODEC PREFIX COUNT
      sends COUNT records (key "k-N", value "PREFIX-N", N from 0) with CODEC (none, gzip), acks=1, one partition;
      prints one line per record: "offset <offset> <timestamp>" (the broker's answer), then "ok".
  kafka_python_legacy.py BOOTSTRAP TOPIC API_VERSION consume FROM COUNT
      assigns partition 0 (no group), seeks to FROM and reads COUNT records; prints one line per record:
      "record <offset> <timestamp> <timestamp_type> <key> <value>" (key/value as text, "None" when null), then "ok".
API_VERSION is dotted ("0.9", "0.10.0", "0.10.1"). Fetch/Produce versions follow from it: (0, 9) uses Produce v1 and
Fetch v1 (message format v0), (0, 10, 0) Produce v2 and Fetch v2 (v1), (0, 10, 1) Fetch v3. No ListOffsets and no
group is used, so only Metadata, Produce and Fetch are exercised. Run by tests/Kiou.Broker.Tests/LegacyFormatTests.cs.
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, api, mode = sys.argv[1], sys.argv[2], tuple(int(x) for x in sys.argv[3].split(".")), sys.argv[4]
if mode == "produce":
    codec, prefix, count = sys.argv[5], sys.argv[6], int(sys.argv[7])
    producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=api, acks=1, linger_ms=50,
                             compression_type=None if codec == "none" else codec, retries=0)
    futures = [producer.send(topic, key=b"k-%d" % i, value=b"%s-%d" % (prefix.encode(), i), partition=0)
               for i in range(count)]
    producer.flush(20)
    for f in futures:
        md = f.get(timeout=20)
        print("offset %d %d" % (md.offset, md.timestamp))
    producer.close(10)
elif mode == "consume":
    start, count = int(sys.argv[5]), int(sys.argv[6])
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=api, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=15000, check_crcs=True)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, start)
    n = 0
    for r in consumer:
        print("record %d %s %s %s %s" % (r.offset, r.timestamp, r.timestamp_type,
                                         None if r.key is None else r.key.decode(),
                                         None if r.value is None else r.value.decode()))
        n += 1
        if n >= count:
            break
    consumer.close()
    assert n == count, "got %d records, expected %d" % (n, count)
else:
    raise SystemExit("unknown mode " + mode)
print("ok")
