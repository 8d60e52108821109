// Sarama (Debian's golang-github-shopify-sarama-dev, 1.22) pinned to an old protocol generation: admin, producer,
// consumer group with commits, offsets read back.
//
// Usage: sarama BOOTSTRAP TOPIC VERSION (0.11.0.0 or 1.0.0.0; Sarama's consumer group needs 0.10.2 or later, and
// fetches with Fetch v4 from 0.11). At these versions Sarama sends JoinGroup v1, OffsetCommit v1 (commit timestamps),
// OffsetFetch v1, DescribeConfigs v0, CreateTopics v1/v2 and DeleteTopics v0/v1. Prints one "ok: ..." line per step;
// any failure exits 1 with the reason on stderr. Built offline in GOPATH mode by tests/Kiou.Broker.Tests/OldClientTests.cs.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

type handler struct {
	mu    sync.Mutex
	got   map[int32][]int64
	done  chan struct{}
	once  sync.Once
	total int
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		h.got[m.Partition] = append(h.got[m.Partition], m.Offset)
		n := len(h.got[0]) + len(h.got[1])
		h.mu.Unlock()
		s.MarkMessage(m, "")
		if n >= h.total {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

func main() {
	bootstrap, topic, versionText := os.Args[1], os.Args[2], os.Args[3]
	version, err := sarama.ParseKafkaVersion(versionText)
	if err != nil {
		fail("version: %v", err)
	}
	cfg := sarama.NewConfig()
	cfg.Version = version
	cfg.ClientID = "sarama-compat"
	cfg.Net.DialTimeout = 10 * time.Second
	cfg.Net.ReadTimeout = 15 * time.Second
	cfg.Admin.Timeout = 10 * time.Second
	brokers := []string{bootstrap}

	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		fail("admin: %v", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		fail("CreateTopic: %v", err)
	}
	// Sarama's ListTopics describes every topic's configs: DescribeConfigs, which it sends from 0.11 only.
	if !version.IsAtLeast(sarama.V0_11_0_0) {
		fmt.Println("ok: CreateTopic")
	} else {
		topics, err := admin.ListTopics()
		if err != nil {
			fail("ListTopics: %v", err)
		}
		if d, ok := topics[topic]; !ok || d.NumPartitions != 2 {
			fail("ListTopics: %v", topics[topic])
		}
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		if err != nil {
			fail("DescribeConfig: %v", err)
		}
		found := false
		for _, e := range entries {
			found = found || e.Name == "retention.ms"
		}
		if !found {
			fail("DescribeConfig: no retention.ms in %v", entries)
		}
		fmt.Println("ok: CreateTopic, ListTopics and DescribeConfig")
	}

	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		fail("producer: %v", err)
	}
	for i := 0; i < 20; i++ {
		p, o, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))})
		if err != nil || p != int32(i%2) || o != int64(i/2) {
			fail("SendMessage %d: partition %d offset %d: %v", i, p, o, err)
		}
	}
	producer.Close()
	fmt.Println("ok: produced 20 messages")

	group := "sarama-" + topic
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		fail("consumer group: %v", err)
	}
	go func() {
		for err := range cg.Errors() {
			fmt.Fprintf(os.Stderr, "consumer group error: %v\n", err)
		}
	}()
	h := &handler{got: map[int32][]int64{}, done: make(chan struct{}), total: 20}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				fmt.Fprintf(os.Stderr, "Consume: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		fail("consumed %v of 20 within 30 s", h.got)
	}
	for p := int32(0); p < 2; p++ {
		for i, o := range h.got[p] {
			if o != int64(i) {
				fail("partition %d: offsets %v", p, h.got[p])
			}
		}
	}
	fmt.Println("ok: consumer group consumed every message in order")
	time.Sleep(500 * time.Millisecond) // a commit interval or more: the marks are committed
	cancel()
	if err := cg.Close(); err != nil {
		fail("Close: %v", err)
	}
	fmt.Println("ok: left the group")

	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		fail("client: %v", err)
	}
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		fail("offset manager: %v", err)
	}
	for p := int32(0); p < 2; p++ {
		pom, err := om.ManagePartition(topic, p)
		if err != nil {
			fail("ManagePartition: %v", err)
		}
		if next, _ := pom.NextOffset(); next != 10 {
			fail("partition %d: committed %d, want 10", p, next)
		}
		pom.Close()
	}
	om.Close()
	newest, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil || newest != 10 {
		fail("GetOffset newest: %d %v", newest, err)
	}
	client.Close()
	fmt.Println("ok: commits read back and GetOffset")

	groups, err := admin.ListConsumerGroups()
	if err != nil {
		fail("ListConsumerGroups: %v", err)
	}
	if _, ok := groups[group]; !ok {
		fail("ListConsumerGroups: %v", groups)
	}
	described, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(described) != 1 || described[0].State != "Empty" {
		fail("DescribeConsumerGroups: %v %v", described, err)
	}
	if err := admin.DeleteTopic(topic); err != nil {
		fail("DeleteTopic: %v", err)
	}
	admin.Close()
	fmt.Println("ok: ListConsumerGroups, DescribeConsumerGroups and DeleteTopic")
}
