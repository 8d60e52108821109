// KafkaJS (npm) against a broker: metadata, admin, produce, offsets, and a consumer group.
// Usage: node kafkajs_smoke.js BOOTSTRAP TOPIC
// Prints one "ok: ..." line per step on stdout and exits 0; any failure exits 1 with the reason on stderr.
// Run by tests/Kiou.Broker.Tests/CompatTests.cs.
'use strict';
const assert = require('node:assert/strict');
const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const [bootstrap, topic] = process.argv.slice(2);
const N = 1000;
const kafka = new Kafka({ clientId: 'compat-kafkajs', brokers: [bootstrap], logLevel: logLevel.ERROR, retry: { retries: 3 } });

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }), true);
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  assert.equal(md.topics[0].partitions.length, 2);
  console.log('ok: createTopics and fetchTopicMetadata');

  // Idempotent, as KafkaJS recommends for acks=-1 (InitProducerId, sequence numbers); the plain producer follows below.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const t0 = Date.now() - 100000;
  const messages = [];
  for (let i = 0; i < N; i++)
    messages.push({ partition: i % 2, key: `k${i}`, value: `value ${i}`, headers: { h: `${i}` }, timestamp: `${t0 + i}` });
  const acks = await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages });
  assert.equal(acks.length, 2);
  for (const a of acks) assert.equal(a.errorCode, 0);
  await producer.disconnect();
  console.log(`ok: produced ${N} records with acks=-1 and gzip, idempotent`);

  const offsets = await admin.fetchTopicOffsets(topic);
  for (const o of offsets) {
    assert.equal(o.low, '0');
    assert.equal(o.high, `${N / 2}`);
  }
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, t0 + N + 1000);
  for (const o of byTime) assert.equal(o.offset, `${N / 2}`);
  console.log('ok: fetchTopicOffsets and fetchTopicOffsetsByTimestamp');

  {
    const groupId = `${topic}-group`;
    const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const got = [[], []];
    let done;
    const all = new Promise((resolve) => { done = resolve; });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        got[partition].push(message);
        if (got[0].length + got[1].length === N) done();
      },
    });
    const timer = setTimeout(() => { console.error(`timed out with ${got[0].length + got[1].length} of ${N} records`); process.exit(1); }, 30000);
    await all;
    clearTimeout(timer);
    for (const p of [0, 1]) {
      got[p].forEach((m, j) => {
        const i = 2 * j + p;
        assert.equal(m.offset, `${j}`);
        assert.equal(m.key.toString(), `k${i}`);
        assert.equal(m.value.toString(), `value ${i}`);
        assert.equal(m.headers.h.toString(), `${i}`);
        assert.equal(m.timestamp, `${t0 + i}`);
      });
    }
    await consumer.disconnect(); // commits the offsets it consumed, then leaves the group
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
    for (const p of committed[0].partitions) assert.equal(p.offset, `${N / 2}`);
    console.log('ok: consumed every record in a group and committed the offsets');
  }

  {
    const plain = kafka.producer({ idempotent: false });
    await plain.connect();
    const sent = await plain.send({ topic, acks: -1, messages: [0, 1, 2, 3].map((i) => ({ partition: i % 2, value: `plain ${i}` })) });
    for (const a of sent) assert.equal(a.errorCode, 0);
    await plain.disconnect();
    for (const o of await admin.fetchTopicOffsets(topic)) assert.equal(o.high, `${N / 2 + 2}`);
    console.log('ok: produced without idempotence');
  }

  await admin.deleteTopics({ topics: [topic] });
  await admin.disconnect();
  console.log('ok: deleteTopics');
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
