#!/usr/bin/python3
"""kafka-python 2.0.2 over SASL_PLAINTEXT or SASL_SSL: it sends SaslHandshake v0 and then bare SASL tokens (no request
header).

Usage: kafka_python_sasl_auth.py BOOTSTRAP MECHANISM USER PASSWORD TOPIC [CA_FILE]
With CA_FILE it connects with SASL_SSL, trusting that CA and checking the broker's name against its certificate.
Produces 20 records as USER, reads them back, then checks a wrong password is refused. Prints "ok: ..." lines and
exits 0; any failure exits 1. Run by tests/Kiou.Broker.Tests/Security/SaslTests.cs.
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

bootstrap, mechanism, user, password, topic = sys.argv[1:6]
ca = sys.argv[6] if len(sys.argv) > 6 else None
N = 20


def sasl(password):
    tls = dict(security_protocol="SASL_SSL", ssl_cafile=ca, ssl_check_hostname=True) if ca else \
        dict(security_protocol="SASL_PLAINTEXT")
    return dict(bootstrap_servers=bootstrap, sasl_mechanism=mechanism, sasl_plain_username=user,
                sasl_plain_password=password, api_version=(2, 0), **tls)


producer = KafkaProducer(acks="all", **sasl(password))
for i in range(N):
    producer.send(topic, key=b"k%d" % i, value=b"v%d" % i).get(timeout=30)
producer.close()
print("ok: produced %d records" % N)

consumer = KafkaConsumer(consumer_timeout_ms=10000, **sasl(password))
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
got = []
deadline = time.time() + 30
while len(got) < N and time.time() < deadline:
    for records in consumer.poll(timeout_ms=500).values():
        got.extend(r.value for r in records)
consumer.close()
assert got == [b"v%d" % i for i in range(N)], got
print("ok: consumed %d records" % N)

start = time.time()
try:
    bad = KafkaProducer(max_block_ms=5000, **sasl("wrong-" + password))
    bad.send(topic, value=b"x").get(timeout=5)
    print("wrong password accepted")
    sys.exit(1)
except KafkaError as e:
    print("ok: wrong password refused (%s after %.1f s)" % (type(e).__name__, time.time() - start))
