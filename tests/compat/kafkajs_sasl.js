// KafkaJS over SASL_PLAINTEXT or SASL_SSL with SCRAM: produce, read back, and a wrong password refused.
// Usage: node kafkajs_sasl.js BOOTSTRAP MECHANISM USER PASSWORD TOPIC [CA_FILE]
// (MECHANISM: scram-sha-256 or scram-sha-512; with CA_FILE it connects with SASL_SSL, trusting that CA and checking
// the broker's address against its certificate.)
// Prints "ok: ..." lines and exits 0; any failure exits 1. Run by tests/Kiou.Broker.Tests/Security/SaslTests.cs.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, mechanism, username, password, topic, ca] = process.argv.slice(2);
const N = 20;
const ssl = ca ? { ssl: { ca: [fs.readFileSync(ca)], rejectUnauthorized: true } } : {};
const client = (pw) => new Kafka({ clientId: 'compat-kafkajs-sasl', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  sasl: { mechanism, username, password: pw }, retry: { retries: 2 }, ...ssl });

async function main() {
  const kafka = client(password);
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < N; i++) messages.push({ partition: 0, value: `v${i}` });
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
  console.log(`ok: produced ${N} records`);

  const consumer = kafka.consumer({ groupId: `${topic}-g`, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} records`)), 30000);
    consumer.run({ eachMessage: async ({ message }) => {
      got.push(message.value.toString());
      if (got.length === N) { clearTimeout(timer); resolve(); }
    } });
  });
  await consumer.disconnect();
  assert.deepEqual(got, messages.map((m) => m.value));
  console.log(`ok: consumed ${N} records`);

  const bad = client(`wrong-${password}`).producer();
  try {
    await bad.connect();
    throw new Error('wrong password accepted');
  } catch (e) {
    assert.match(`${e.name} ${e.message}`, /SASL|uthentication/);
    console.log(`ok: wrong password refused (${e.name}: ${e.message})`);
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
