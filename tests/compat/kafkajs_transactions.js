// KafkaJS (npm) transactions against a broker: transaction() with send and sendOffsets, commit and abort across four
// partitions. Usage: node kafkajs_transactions.js BOOTSTRAP TOPIC
// Prints one "ok: ..." line per step on stdout and exits 0; any failure exits 1 with the reason on stderr.
// Run by tests/Kiou.Broker.Tests/CompatTests.cs: a read_uncommitted consumer sees every record, a read_committed one
// exactly the committed transaction's, and the group's offsets are those of the committed transaction.
'use strict';
const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic] = process.argv.slice(2);
const groupId = `${topic}-group`;
const kafka = new Kafka({ clientId: 'compat-kafkajs-txn', brokers: [bootstrap], logLevel: logLevel.ERROR, retry: { retries: 8 } });

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true }), true);

  const producer = kafka.producer({ transactionalId: `${topic}-tx`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = (t) => [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ partition: i % 4, value: `t${t}-${i}` }));

  const committed = await producer.transaction();
  await committed.send({ topic, messages: messages(0) });
  await committed.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition: 0, offset: '5' }] }] });
  await committed.commit();
  console.log('ok: committed a transaction with records and offsets');

  const aborted = await producer.transaction();
  await aborted.send({ topic, messages: messages(1) });
  await aborted.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition: 0, offset: '9' }] }] });
  await aborted.abort();
  console.log('ok: aborted a transaction with records and offsets');
  await producer.disconnect();

  // The group's offset is the committed transaction's; the aborted one's never became visible.
  let offset;
  for (let i = 0; i < 50; i++) {
    const fetched = await admin.fetchOffsets({ groupId, topics: [topic] });
    offset = fetched[0].partitions.find((p) => p.partition === 0).offset;
    if (offset === '5') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(offset, '5');
  console.log('ok: the group offset is the committed transaction\'s');

  // Every record, without the control batches (KafkaJS skips them), for a read_uncommitted consumer.
  const consumer = kafka.consumer({ groupId: `${topic}-reader`, readUncommitted: true, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const got = [];
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  await consumer.run({ eachMessage: async ({ message }) => { got.push(message.value.toString()); if (got.length === 16) done(); } });
  const timer = setTimeout(() => { console.error(`timed out with ${got.length} of 16 records: ${got}`); process.exit(1); }, 30000);
  await all;
  clearTimeout(timer);
  await new Promise((r) => setTimeout(r, 500)); // nothing more than the 16 records (no marker served as a record)
  await consumer.disconnect();
  assert.deepEqual(got.sort(), [...messages(0), ...messages(1)].map((m) => m.value).sort());
  console.log('ok: a read_uncommitted consumer read the 16 records');

  // read_committed (KafkaJS's default): exactly the committed transaction's 8 records, in order per partition.
  const committedReader = kafka.consumer({ groupId: `${topic}-committed-reader`, readUncommitted: false, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await committedReader.connect();
  await committedReader.subscribe({ topics: [topic], fromBeginning: true });
  const seen = [];
  let enough;
  const eight = new Promise((resolve) => { enough = resolve; });
  await committedReader.run({ eachMessage: async ({ partition, message }) => { seen.push(`${partition}:${message.value.toString()}`); if (seen.length === 8) enough(); } });
  const timer2 = setTimeout(() => { console.error(`timed out with ${seen.length} of 8 committed records: ${seen}`); process.exit(1); }, 30000);
  await eight;
  clearTimeout(timer2);
  await new Promise((r) => setTimeout(r, 1000)); // and nothing of the aborted transaction after them
  await committedReader.disconnect();
  const expected = messages(0).map((m) => `${m.partition}:${m.value}`);
  for (let p = 0; p < 4; p++) {
    assert.deepEqual(seen.filter((s) => s.startsWith(`${p}:`)), expected.filter((s) => s.startsWith(`${p}:`)));
  }
  assert.equal(seen.length, 8);
  console.log('ok: a read_committed consumer read exactly the 8 committed records');

  await admin.disconnect();
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
