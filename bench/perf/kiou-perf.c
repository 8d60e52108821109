/*
 * kiou-perf: KIOU's load driver in C, in the spirit of librdkafka's rdkafka_performance, so that the benchmark
 * measures the broker and not a managed call per record. Built by bench/run.sh against Debian's librdkafka-dev:
 *   gcc -O2 -o artifacts/kiou-perf bench/perf/kiou-perf.c -lrdkafka -lpthread
 *
 *   kiou-perf produce  (-b HOST:PORT | --mock) [-t TOPIC] [-p PARTITIONS] [-s BYTES] [-c COUNT] [-a ACKS] [-l LINGER_MS]
 *                      [--batch BYTES] [--idempotence] [-P PRODUCERS] [--rate RECORDS_PER_S] [--no-verify] [-X key=value]
 *   kiou-perf consume  -b HOST:PORT [-t TOPIC] [-p PARTITIONS] [-c COUNT] [--bytes BYTES] [--rate RECORDS_PER_S]
 *                      [--consume-batch]
 *   kiou-perf latency  -b HOST:PORT [-t TOPIC] [-s BYTES] [--rate RECORDS_PER_S] [--seconds S] [-a ACKS] [-l LINGER_MS]
 *   kiou-perf diskread --file PATH [--size BYTES] [--direct] [--qd N] [--block BYTES]
 *   kiou-perf dropcache PATH...   (fdatasync + POSIX_FADV_DONTNEED on every file under PATH; reports what stays cached)
 *   kiou-perf cachestat PATH...   (bytes of the files under PATH resident in the page cache)
 *   kiou-perf version             (the librdkafka it runs on)
 *
 * Each run prints one JSON line on stdout (records, bytes, seconds, records_per_second, MBps, errors, lost,
 * cpu_seconds of this process from getrusage) and exits non-zero if a record was lost or failed.
 *
 * produce: librdkafka's batch API (rd_kafka_produce_batch) over one static payload, no copy and no per-record
 * callback: delivery.report.only.error makes the delivery callback run for failures only, which it counts. Unless
 * --no-verify, the partitions' high watermarks are read before and after (outside the timed part) and must have
 * grown by exactly COUNT. With --mock the broker is librdkafka's in-process mock cluster (test.mock.num.brokers=1),
 * which stores nothing: the client's own ceiling with the same settings.
 * consume: assigns every partition from its low watermark and reads COUNT records (default: up to the high
 * watermarks seen at the start) or BYTES of values; an offset that is not the one expected counts as lost. Records
 * come from rd_kafka_consumer_poll one at a time; --consume-batch takes them with rd_kafka_consume_batch_queue
 * instead, which costs less CPU but was slower here (it waits for a full batch while the fetch queue drains).
 * latency: one producer at a fixed rate (linger 0 unless -l) with a monotonic timestamp in each value, and a
 * consumer in the same process (so one clock serves both); prints p50/p99/p99.9 of produce-call to receipt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static const char *brokers;
static int mock;
static const char *topic = "kiou-perf";
static int partitions = 1;
static int record_size = -1; /* default 1024, latency 100 */
static long long count = -1;
static long long max_bytes = -1;
static const char *acks = "1";
static int linger_ms = -1;
static int batch_bytes = 1048576;
static int idempotence;
static int producers = 1;
static double rate;
static double seconds = 10;
static int verify = 1;
static const char *extra[64];
static int n_extra;
static const char *file_path;
static long long file_size = 1LL << 30;
static int direct_io;
static int queue_depth = 8;
static int block_bytes = -1;
static int consume_batch;

static atomic_llong delivery_errors;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kiou-perf: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
	struct timespec ts = { .tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
	}
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[512];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
		die("%s=%s: %s", k, v, err);
}

static void seti(rd_kafka_conf_t *conf, const char *k, long long v)
{
	char s[32];
	snprintf(s, sizeof s, "%lld", v);
	set(conf, k, s);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 4)
		fprintf(stderr, "librdkafka %s: %s\n", fac, buf);
}

static rd_kafka_conf_t *base_conf(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (mock)
		set(conf, "test.mock.num.brokers", "1");
	else if (brokers)
		set(conf, "bootstrap.servers", brokers);
	else
		die("-b HOST:PORT or --mock is needed");
	rd_kafka_conf_set_log_cb(conf, log_cb);
	for (int i = 0; i < n_extra; i++) {
		char *kv = strdup(extra[i]), *eq = strchr(kv, '=');
		if (!eq)
			die("-X %s: key=value expected", extra[i]);
		*eq = 0;
		set(conf, kv, eq + 1);
		free(kv);
	}
	return conf;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char err[512];
	rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
	if (!rk)
		die("rd_kafka_new: %s", err);
	return rk;
}

/* Sum over the partitions of the high (or low) watermark, from the broker. */
static long long watermarks(rd_kafka_t *rk, int high)
{
	long long sum = 0;
	for (int p = 0; p < partitions; p++) {
		int64_t lo, hi;
		rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
		for (int attempt = 0; attempt < 50; attempt++) {
			e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
			if (!e)
				break;
			usleep(100000);
		}
		if (e)
			die("watermarks of %s/%d: %s", topic, p, rd_kafka_err2str(e));
		sum += high ? hi : lo;
	}
	return sum;
}

static void wait_metadata(rd_kafka_t *rk, rd_kafka_topic_t *rkt)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		const struct rd_kafka_metadata *md;
		rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
		if (!e) {
			int ok = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt >= partitions;
			rd_kafka_metadata_destroy(md);
			if (ok)
				return;
		}
		usleep(100000);
	}
	die("no metadata for %s with %d partitions", topic, partitions);
}

static void print_result(const char *mode, long long records, long long bytes, double secs, long long errors,
			 long long lost, double cpu, const char *more)
{
	printf("{\"mode\":\"%s\",\"target\":\"%s\",\"records\":%lld,\"bytes\":%lld,\"seconds\":%.6f,"
	       "\"records_per_second\":%.1f,\"MBps\":%.3f,\"errors\":%lld,\"lost\":%lld,\"cpu_seconds\":%.3f%s}\n",
	       mode, mock ? "mock" : "broker", records, bytes, secs, secs > 0 ? records / secs : 0,
	       secs > 0 ? bytes / secs / 1e6 : 0, errors, lost, cpu, more ? more : "");
	fflush(stdout);
}

/* ---------------------------------------------------------------- produce */

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err) {
		if (atomic_fetch_add(&delivery_errors, 1) < 5)
			fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
	}
}

struct producer {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	long long count;
	int index;
	pthread_t thread;
};

static char *payload;

static void *produce_thread(void *arg)
{
	struct producer *pr = arg;
	enum { BATCH = 1024 };
	rd_kafka_message_t msgs[BATCH];
	long long sent = 0;
	unsigned next_partition = (unsigned)pr->index;
	double per_producer_rate = rate / producers;
	int64_t t0 = now_ns();
	while (sent < pr->count) {
		int n = pr->count - sent < BATCH ? (int)(pr->count - sent) : BATCH;
		if (per_producer_rate > 0) {
			int64_t due = t0 + (int64_t)(sent / per_producer_rate * 1e9);
			if (due > now_ns())
				sleep_until_ns(due);
			if (n > 100)
				n = 100;
		}
		memset(msgs, 0, sizeof(msgs[0]) * n);
		for (int i = 0; i < n; i++) {
			msgs[i].payload = payload;
			msgs[i].len = record_size;
			msgs[i].partition = (int32_t)(next_partition++ % (unsigned)partitions);
		}
		int pending = n;
		while (pending > 0) {
			/* One partition: the batch goes onto its queue under one lock; several: each record to its own. */
			int done = partitions == 1 ? rd_kafka_produce_batch(pr->rkt, 0, 0, msgs, pending)
						   : rd_kafka_produce_batch(pr->rkt, 0, RD_KAFKA_MSG_F_PARTITION, msgs, pending);
			if (done == pending)
				break;
			/* Queue full: keep the failed ones (the order does not matter here), serve the queue, resubmit. */
			int k = 0;
			for (int i = 0; i < pending; i++) {
				if (msgs[i].err) {
					if (msgs[i].err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
						die("produce: %s", rd_kafka_err2str(msgs[i].err));
					msgs[k] = msgs[i];
					msgs[k].err = 0;
					k++;
				}
			}
			pending = k;
			rd_kafka_poll(pr->rk, 1);
		}
		sent += n;
		rd_kafka_poll(pr->rk, 0);
	}
	while (rd_kafka_flush(pr->rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
		if (rd_kafka_outq_len(pr->rk) == 0)
			break;
	}
	return NULL;
}

static int run_produce(void)
{
	if (count < 0)
		count = 1000000;
	payload = malloc(record_size > 0 ? record_size : 1);
	for (int i = 0; i < record_size; i++)
		payload[i] = (char)(rand() & 0xff);
	struct producer *prs = calloc(producers, sizeof *prs);
	for (int i = 0; i < producers; i++) {
		rd_kafka_conf_t *conf = base_conf();
		set(conf, "acks", acks);
		seti(conf, "linger.ms", linger_ms < 0 ? 5 : linger_ms);
		seti(conf, "batch.size", batch_bytes);
		seti(conf, "message.max.bytes", batch_bytes + 1000 > 1000000 ? batch_bytes + 1000 : 1000000);
		set(conf, "compression.codec", "none");
		set(conf, "enable.idempotence", idempotence ? "true" : "false");
		set(conf, "queue.buffering.max.kbytes", "1048576");
		set(conf, "queue.buffering.max.messages", "2000000");
		set(conf, "delivery.report.only.error", "true");
		rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
		prs[i].rk = new_client(RD_KAFKA_PRODUCER, conf);
		prs[i].rkt = rd_kafka_topic_new(prs[i].rk, topic, NULL);
		prs[i].count = count / producers + (i < count % producers ? 1 : 0);
		prs[i].index = i;
		/* Connections and metadata before the clock starts. */
		wait_metadata(prs[i].rk, prs[i].rkt);
	}
	/* With --mock every producer instance has a mock cluster of its own, so each is checked apart. */
	int clusters = mock ? producers : 1;
	long long before = 0;
	for (int i = 0; verify && i < clusters; i++)
		before += watermarks(prs[i].rk, 1);
	double c0 = cpu_s(), t0 = now_s();
	for (int i = 0; i < producers; i++)
		pthread_create(&prs[i].thread, NULL, produce_thread, &prs[i]);
	for (int i = 0; i < producers; i++)
		pthread_join(prs[i].thread, NULL);
	double secs = now_s() - t0, cpu = cpu_s() - c0;
	long long lost = 0;
	if (verify) {
		long long after = 0;
		for (int i = 0; i < clusters; i++)
			after += watermarks(prs[i].rk, 1);
		lost = count - (after - before);
	}
	long long errors = atomic_load(&delivery_errors);
	char more[128];
	snprintf(more, sizeof more, ",\"producers\":%d,\"partitions\":%d,\"record_bytes\":%d,\"verified\":%s", producers,
		 partitions, record_size, verify ? "true" : "false");
	print_result("produce", count, count * (long long)record_size, secs, errors, lost, cpu, more);
	for (int i = 0; i < producers; i++) {
		rd_kafka_topic_destroy(prs[i].rkt);
		rd_kafka_destroy(prs[i].rk);
	}
	if (errors || lost) {
		fprintf(stderr, "kiou-perf: %lld delivery errors, %lld records missing from the partitions\n", errors, lost);
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- consume */

static rd_kafka_t *new_consumer(int latency)
{
	rd_kafka_conf_t *conf = base_conf();
	char group[64];
	snprintf(group, sizeof group, "kiou-perf-%d", (int)getpid());
	set(conf, "group.id", group);
	set(conf, "enable.auto.commit", "false");
	set(conf, "enable.auto.offset.store", "false");
	set(conf, "enable.partition.eof", "false");
	if (latency) {
		set(conf, "fetch.wait.max.ms", "100");
		set(conf, "fetch.min.bytes", "1");
	} else {
		set(conf, "fetch.max.bytes", "52428800");
		set(conf, "max.partition.fetch.bytes", "10485760");
		set(conf, "queued.max.messages.kbytes", "1048576");
	}
	rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, conf);
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

static int run_consume(void)
{
	rd_kafka_t *rk = new_consumer(0);
	int64_t *expected = calloc(partitions, sizeof *expected);
	long long total_hi = 0;
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
	for (int p = 0; p < partitions; p++) {
		int64_t lo, hi;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
		if (e)
			die("watermarks of %s/%d: %s", topic, p, rd_kafka_err2str(e));
		expected[p] = lo;
		total_hi += hi - lo;
		rd_kafka_topic_partition_list_add(list, topic, p)->offset = lo;
	}
	if (count < 0 && max_bytes < 0)
		count = total_hi;
	rd_kafka_resp_err_t e = rd_kafka_assign(rk, list);
	if (e)
		die("assign: %s", rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(list);
	long long records = 0, bytes = 0, errors = 0, lost = 0;
	double c0 = cpu_s(), t0 = now_s(), last = t0;
	int64_t n0 = now_ns();
	/* Batches from the consumer queue: one lock and wake-up per batch, not per record. */
	rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(rk);
	enum { BATCH = 1024 };
	rd_kafka_message_t *batch[BATCH];
	while ((count < 0 || records < count) && (max_bytes < 0 || bytes < max_bytes)) {
		ssize_t got;
		if (consume_batch)
			got = rd_kafka_consume_batch_queue(queue, 1000, batch, BATCH);
		else
			got = (batch[0] = rd_kafka_consumer_poll(rk, 1000)) != NULL;
		if (got <= 0) {
			if (now_s() - last > 30)
				die("consume: stalled after %lld records", records);
			continue;
		}
		last = now_s();
		for (ssize_t j = 0; j < got; j++) {
		rd_kafka_message_t *m = batch[j];
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && errors++ < 5)
				fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
		} else {
			int p = m->partition;
			if (p >= 0 && p < partitions) {
				if (m->offset != expected[p])
					lost += m->offset > expected[p] ? m->offset - expected[p] : 1;
				expected[p] = m->offset + 1;
			}
			records++;
			bytes += m->len;
			if (rate > 0 && records % 100 == 0) {
				int64_t due = n0 + (int64_t)(records / rate * 1e9);
				if (due > now_ns())
					sleep_until_ns(due);
			}
		}
		rd_kafka_message_destroy(m);
		}
	}
	rd_kafka_queue_destroy(queue);
	double secs = now_s() - t0, cpu = cpu_s() - c0;
	print_result("consume", records, bytes, secs, errors, lost, cpu, NULL);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return errors || lost ? 1 : 0;
}

/* ---------------------------------------------------------------- latency */

static const char latency_magic[8] = { 'K', 'I', 'O', 'U', 'L', 'A', 'T', '1' };
static double *latencies;
static atomic_llong received;
static long long latency_total;
static atomic_int producing_done;

struct latency_consumer {
	rd_kafka_t *rk;
	double deadline_after_done;
};

static void *latency_consume_thread(void *arg)
{
	struct latency_consumer *lc = arg;
	double done_at = 0;
	while (atomic_load(&received) < latency_total) {
		if (atomic_load(&producing_done)) {
			if (done_at == 0)
				done_at = now_s();
			else if (now_s() - done_at > lc->deadline_after_done)
				break;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(lc->rk, 100);
		if (!m)
			continue;
		if (!m->err && m->len >= 16 && memcmp(m->payload, latency_magic, 8) == 0) {
			int64_t sent;
			memcpy(&sent, (char *)m->payload + 8, 8);
			long long i = atomic_fetch_add(&received, 1);
			if (i < latency_total)
				latencies[i] = (now_ns() - sent) / 1e6;
		}
		rd_kafka_message_destroy(m);
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int run_latency(void)
{
	if (rate <= 0)
		rate = 10000;
	if (record_size < 0)
		record_size = 100;
	if (record_size < 16)
		record_size = 16;
	rd_kafka_conf_t *conf = base_conf();
	set(conf, "acks", acks);
	seti(conf, "linger.ms", linger_ms < 0 ? 0 : linger_ms);
	seti(conf, "batch.size", batch_bytes);
	set(conf, "delivery.report.only.error", "true");
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_t *prk = new_client(RD_KAFKA_PRODUCER, conf);
	rd_kafka_t *crk = new_consumer(1);
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, topic, 0)->offset = RD_KAFKA_OFFSET_END;
	rd_kafka_assign(crk, list);
	rd_kafka_topic_partition_list_destroy(list);
	char *value = calloc(1, record_size);
	/* Let the consumer settle at the end of the log: warm-up records (no magic) until one arrives. */
	int settled = 0;
	for (int attempt = 0; attempt < 50 && !settled; attempt++) {
		rd_kafka_producev(prk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
				  RD_KAFKA_V_VALUE(value, record_size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				  RD_KAFKA_V_END);
		rd_kafka_flush(prk, 5000);
		rd_kafka_message_t *m;
		while ((m = rd_kafka_consumer_poll(crk, 200)) != NULL) {
			settled |= !m->err;
			rd_kafka_message_destroy(m);
		}
	}
	if (!settled)
		die("latency: the consumer received nothing");
	latency_total = (long long)(rate * seconds);
	latencies = calloc(latency_total, sizeof *latencies);
	struct latency_consumer lc = { .rk = crk, .deadline_after_done = 20 };
	pthread_t ct;
	pthread_create(&ct, NULL, latency_consume_thread, &lc);
	memcpy(value, latency_magic, 8);
	double c0 = cpu_s(), t0 = now_s();
	int64_t n0 = now_ns();
	for (long long i = 0; i < latency_total; i++) {
		sleep_until_ns(n0 + (int64_t)(i / rate * 1e9));
		int64_t ts = now_ns();
		memcpy(value + 8, &ts, 8);
		rd_kafka_resp_err_t e;
		while ((e = rd_kafka_producev(prk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
					      RD_KAFKA_V_VALUE(value, record_size),
					      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
		       RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(prk, 1);
		if (e)
			die("produce: %s", rd_kafka_err2str(e));
		rd_kafka_poll(prk, 0);
	}
	rd_kafka_flush(prk, 30000);
	atomic_store(&producing_done, 1);
	pthread_join(ct, NULL);
	double secs = now_s() - t0, cpu = cpu_s() - c0;
	long long got = atomic_load(&received);
	if (got > latency_total)
		got = latency_total;
	qsort(latencies, got, sizeof *latencies, cmp_double);
#define Q(q) (got ? latencies[(long long)((q) * got) < got ? (long long)((q) * got) : got - 1] : -1)
	char more[256];
	snprintf(more, sizeof more, ",\"rate\":%.0f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"p999_ms\":%.4f,\"max_ms\":%.4f",
		 rate, Q(0.5), Q(0.99), Q(0.999), got ? latencies[got - 1] : -1);
	long long errors = atomic_load(&delivery_errors);
	print_result("latency", got, got * (long long)record_size, secs, errors, latency_total - got, cpu, more);
	rd_kafka_consumer_close(crk);
	rd_kafka_destroy(crk);
	rd_kafka_destroy(prk);
	return errors || got != latency_total ? 1 : 0;
}

/* ---------------------------------------------------------------- page cache and disk read */

static long long resident_bytes(int fd, long long size)
{
	if (size <= 0)
		return 0;
	void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (size + page - 1) / page;
	unsigned char *vec = malloc(pages);
	long long resident = 0;
	if (mincore(map, size, vec) == 0) {
		for (size_t i = 0; i < pages; i++)
			resident += vec[i] & 1;
	}
	free(vec);
	munmap(map, size);
	return resident * page;
}

static int drop_files;
static long long walk_files, walk_bytes, walk_cached;

static int walk_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	if (drop_files) {
		/* Only clean pages can be dropped: write back first. */
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	}
	walk_files++;
	walk_bytes += st->st_size;
	long long r = resident_bytes(fd, st->st_size);
	if (r > 0)
		walk_cached += r;
	close(fd);
	return 0;
}

static int run_walk(int drop, int argc, char **paths)
{
	drop_files = drop;
	for (int i = 0; i < argc; i++)
		nftw(paths[i], walk_one, 32, FTW_PHYS);
	printf("{\"mode\":\"%s\",\"files\":%lld,\"bytes\":%lld,\"cached_bytes\":%lld}\n", drop ? "dropcache" : "cachestat",
	       walk_files, walk_bytes, walk_cached);
	return 0;
}

struct reader {
	int fd;
	pthread_t thread;
	long long bytes;
};
static atomic_llong next_offset;

static void *read_thread(void *arg)
{
	struct reader *r = arg;
	void *buf;
	if (posix_memalign(&buf, 4096, block_bytes))
		die("posix_memalign");
	for (;;) {
		long long off = atomic_fetch_add(&next_offset, block_bytes);
		if (off >= file_size)
			break;
		ssize_t n = pread(r->fd, buf, block_bytes, off);
		if (n < 0)
			die("pread at %lld: %s", off, strerror(errno));
		r->bytes += n;
		if (n < block_bytes)
			break;
	}
	free(buf);
	return NULL;
}

static int run_diskread(void)
{
	if (!file_path)
		die("diskread needs --file PATH");
	if (block_bytes <= 0)
		block_bytes = direct_io ? 1048576 : 65536;
	struct stat st;
	if (stat(file_path, &st) != 0 || st.st_size < file_size) {
		int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("create %s: %s", file_path, strerror(errno));
		char *chunk = malloc(1 << 20);
		for (int i = 0; i < 1 << 20; i++)
			chunk[i] = (char)(rand() & 0xff);
		for (long long w = 0; w < file_size; w += 1 << 20) {
			if (write(fd, chunk, 1 << 20) != 1 << 20)
				die("write %s: %s", file_path, strerror(errno));
		}
		fdatasync(fd);
		close(fd);
		free(chunk);
	}
	int fd = open(file_path, O_RDONLY);
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	long long cached = resident_bytes(fd, file_size);
	close(fd);
	fd = open(file_path, O_RDONLY | (direct_io ? O_DIRECT : 0));
	if (fd < 0)
		die("open %s: %s", file_path, strerror(errno));
	int threads = direct_io ? queue_depth : 1;
	struct reader *rs = calloc(threads, sizeof *rs);
	atomic_store(&next_offset, 0);
	double c0 = cpu_s(), t0 = now_s();
	for (int i = 0; i < threads; i++) {
		rs[i].fd = fd;
		pthread_create(&rs[i].thread, NULL, read_thread, &rs[i]);
	}
	long long bytes = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(rs[i].thread, NULL);
		bytes += rs[i].bytes;
	}
	double secs = now_s() - t0, cpu = cpu_s() - c0;
	close(fd);
	char more[160];
	snprintf(more, sizeof more, ",\"direct\":%s,\"queue_depth\":%d,\"block_bytes\":%d,\"cached_before_bytes\":%lld",
		 direct_io ? "true" : "false", threads, block_bytes, cached);
	print_result("diskread", bytes / block_bytes, bytes, secs, 0, 0, cpu, more);
	return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr, "usage: kiou-perf produce|consume|latency|diskread|dropcache|cachestat [options]; see the comment at "
			"the top of bench/perf/kiou-perf.c\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	if (!strcmp(mode, "version")) {
		printf("{\"mode\":\"version\",\"librdkafka\":\"%s\"}\n", rd_kafka_version_str());
		return 0;
	}
	if (!strcmp(mode, "dropcache") || !strcmp(mode, "cachestat"))
		return run_walk(!strcmp(mode, "dropcache"), argc - 2, argv + 2);
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
#define ARG() (i + 1 < argc ? argv[++i] : (die("%s needs a value", a), (char *)0))
		if (!strcmp(a, "-b"))
			brokers = ARG();
		else if (!strcmp(a, "--mock"))
			mock = 1;
		else if (!strcmp(a, "-t"))
			topic = ARG();
		else if (!strcmp(a, "-p"))
			partitions = atoi(ARG());
		else if (!strcmp(a, "-s"))
			record_size = atoi(ARG());
		else if (!strcmp(a, "-c"))
			count = atoll(ARG());
		else if (!strcmp(a, "--bytes"))
			max_bytes = atoll(ARG());
		else if (!strcmp(a, "-a"))
			acks = ARG();
		else if (!strcmp(a, "-l"))
			linger_ms = atoi(ARG());
		else if (!strcmp(a, "--batch"))
			batch_bytes = atoi(ARG());
		else if (!strcmp(a, "--idempotence"))
			idempotence = 1;
		else if (!strcmp(a, "-P"))
			producers = atoi(ARG());
		else if (!strcmp(a, "--rate"))
			rate = atof(ARG());
		else if (!strcmp(a, "--seconds"))
			seconds = atof(ARG());
		else if (!strcmp(a, "--consume-batch"))
			consume_batch = 1;
		else if (!strcmp(a, "--no-verify"))
			verify = 0;
		else if (!strcmp(a, "-X")) {
			if (n_extra == 64)
				die("too many -X");
			extra[n_extra++] = ARG();
		} else if (!strcmp(a, "--file"))
			file_path = ARG();
		else if (!strcmp(a, "--size"))
			file_size = atoll(ARG());
		else if (!strcmp(a, "--direct"))
			direct_io = 1;
		else if (!strcmp(a, "--qd"))
			queue_depth = atoi(ARG());
		else if (!strcmp(a, "--block"))
			block_bytes = atoi(ARG());
		else
			die("unknown argument %s", a);
	}
	if (partitions < 1 || producers < 1)
		usage();
	if (record_size < 0 && strcmp(mode, "latency"))
		record_size = 1024;
	if (!strcmp(mode, "produce"))
		return run_produce();
	/* A mock cluster lives in one client instance: a consumer of its own would see another, empty one. */
	if (mock && (!strcmp(mode, "consume") || !strcmp(mode, "latency")))
		die("--mock is for produce only");
	if (!strcmp(mode, "consume"))
		return run_consume();
	if (!strcmp(mode, "latency"))
		return run_latency();
	if (!strcmp(mode, "diskread"))
		return run_diskread();
	usage();
	return 2;
}
