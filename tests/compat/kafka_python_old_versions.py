#!/usr/bin/python3
"""kafka-python pinned to an old protocol generation: consumer group, commits, offsets, admin.

Usage: kafka_python_old_versions.py BOOTSTRAP TOPIC API_VERSION [consume]
API_VERSION is dotted (0.9, 0.10.0, 0.10.1, 0.11, 1.0); kafka-python then sends only the request versions a broker of
that release served (for 0.9: Metadata v0, JoinGroup v0, OffsetCommit v2, OffsetFetch v1, ListOffsets v0, ...).
TOPIC must exist with 2 partitions and 10 records in each. With "consume", the group consumes them too (this needs
the Fetch version of that generation). Prints one "ok: ..." line per step; any failure raises (exit 1).
Run by tests/Kiou.Broker.Tests/OldClientTests.cs.
"""
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

bootstrap, topic, version = sys.argv[1], sys.argv[2], tuple(int(x) for x in sys.argv[3].split("."))
consume = len(sys.argv) > 4 and sys.argv[4] == "consume"
group = "old-%s-%s" % (topic, sys.argv[3])
tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]


def consumer(**extra):
    return KafkaConsumer(bootstrap_servers=bootstrap, api_version=version, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500,
                         request_timeout_ms=15000, consumer_timeout_ms=10000, **extra)


c = consumer()
c.subscribe([topic])
if consume:
    got = []
    deadline = time.time() + 20
    while len(got) < 20:
        assert time.time() < deadline, "consumed %d of 20 records" % len(got)
        for records in c.poll(timeout_ms=1000).values():
            got.extend(records)
    assert sorted((r.partition, r.offset) for r in got) == [(p, o) for p in (0, 1) for o in range(10)], got
    print("ok: joined the group and consumed every record")
else:
    # JoinGroup and SyncGroup only: Fetch is not sent.
    c._coordinator.ensure_coordinator_ready()
    c._coordinator.ensure_active_group()
    assert c._coordinator._generation.generation_id > 0, c._coordinator._generation
    assert sorted(c.assignment()) == sorted(tps), c.assignment()
    print("ok: joined the group, assigned both partitions")
generation = c._coordinator._generation.generation_id

# Heartbeats for a while: the generation stays (a rejected heartbeat would make the member rejoin).
deadline = time.time() + 2
while time.time() < deadline:
    c._client.poll(timeout_ms=100)
    c._coordinator.poll() if hasattr(c._coordinator, "poll") else None
assert c._coordinator._generation.generation_id == generation, (generation, c._coordinator._generation)
assert c._coordinator.heartbeat.last_receive > 0 or version < (0, 9), "no heartbeat answered"
print("ok: heartbeats kept generation %d" % generation)

c.commit({tps[0]: OffsetAndMetadata(7, "seven"), tps[1]: OffsetAndMetadata(3, "")})
assert c.committed(tps[0]) == 7 and c.committed(tps[1]) == 3, (c.committed(tps[0]), c.committed(tps[1]))
print("ok: committed in the group and fetched the commits back")

# Positions from ListOffsets (v0 before 0.10.1): the committed offset, and the ends of the log.
c.seek_to_end(tps[0])
assert c.position(tps[0]) == 10, c.position(tps[0])
c.seek_to_beginning(tps[1])
assert c.position(tps[1]) == 0, c.position(tps[1])
print("ok: seek_to_end and seek_to_beginning answered 10 and 0")
c.close()  # LeaveGroup
print("ok: left the group")

# A member of a later generation sees the commits of the old one.
c2 = consumer()
assert c2.committed(tps[0]) == 7 and c2.committed(tps[1]) == 3
c2.close(autocommit=False)
print("ok: commits read back by a new consumer")

if version >= (0, 10, 0):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=version, request_timeout_ms=10000)
    groups = [g for g, _ in admin.list_consumer_groups()]
    assert group in groups, groups
    described = admin.describe_consumer_groups([group])[0]
    assert described.group == group and described.state == "Empty", described
    print("ok: list_consumer_groups and describe_consumer_groups")
    if version >= (0, 10, 1):
        extra = topic + "-admin"
        admin.create_topics([NewTopic(name=extra, num_partitions=3, replication_factor=1)])
        assert extra in admin.list_topics()
        admin.delete_topics([extra])
        print("ok: create_topics and delete_topics")
    if version >= (0, 11):
        from kafka.admin import ConfigResource, ConfigResourceType
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        names = [entry[0] for entry in answer[0].resources[0][4]]
        assert "retention.ms" in names, names
        print("ok: describe_configs")
    admin.close()
