#!/usr/bin/python3
"""kafka-python configured for SASL/PLAIN against a broker without SASL: the client must say so, not time out.

Usage: kafka_python_sasl.py BOOTSTRAP
Prints "ok: <the client's error>" and exits 0 when kafka-python reports UnsupportedSaslMechanismError (the broker enables no
mechanism) within 10 s; exits 1 otherwise. Run by tests/Kiou.Broker.Tests/OldClientTests.cs.
"""
import logging
import sys
import time

from kafka import KafkaConsumer
from kafka.errors import KafkaError

messages = []


class Capture(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())


logging.getLogger("kafka").addHandler(Capture())
logging.getLogger("kafka").setLevel(logging.INFO)
start = time.time()
try:
    c = KafkaConsumer(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                      sasl_plain_username="u", sasl_plain_password="p", api_version=(1, 0), request_timeout_ms=10000)
    while time.time() - start < 10 and not any("sasl" in m.lower() for m in messages):
        c._client.poll(timeout_ms=200)
        c._client.maybe_connect(c._client.least_loaded_node() or "bootstrap-0")
except KafkaError as e:
    messages.append(repr(e))
hits = [m for m in messages if "UnsupportedSaslMechanismError" in m]
assert hits, "no SASL refusal reported in %.1f s:\n%s" % (time.time() - start, "\n".join(messages))
assert time.time() - start < 10, "took %.1f s" % (time.time() - start)
print("ok: " + hits[0])
