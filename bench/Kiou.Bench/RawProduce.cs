using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Confluent.Kafka;
using Kiou.Protocol.Records;

namespace Kiou.Bench;

/// <summary>
/// A raw-protocol producer: the same prebuilt 1 MiB batch sent again and again over one connection, up to
/// <c>inFlight</c> requests pipelined, with or without a producer id. It isolates what the broker's producer-state
/// checks cost from what a client's idempotent mode costs (librdkafka keeps one request in flight per partition for
/// an idempotent producer and busy-polls meanwhile; see BENCHMARKS.md). Produce v8 and InitProducerId v0 are encoded
/// by hand from Kafka's schemas, not with KIOU's codecs.
/// </summary>
static class RawProduce
{
    public static RunResult Run(string name, BrokerUnderTest broker, string topic, int recordBytes, long count, int batchBytes,
        bool idempotent, int inFlight)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect("127.0.0.1", broker.Port);
        long producerId = -1;
        if (idempotent)
        {
            producerId = InitProducerId(socket);
        }

        var payload = new byte[recordBytes];
        new Random(42).NextBytes(payload);
        int perBatch = Math.Max(1, (batchBytes - 61) / (recordBytes + 12));
        byte[] batch = Batch(payload, perBatch, producerId);
        long batches = (count + perBatch - 1) / perBatch;
        long records = batches * perBatch;

        byte[] frame = ProduceFrame(topic, batch, out int batchAt);
        Span<byte> b = frame.AsSpan(batchAt, batch.Length);
        var slots = new SemaphoreSlim(inFlight, inFlight);
        string? failure = null;
        long answered = 0;
        var reader = new Thread(() =>
        {
            var size = new byte[4];
            var body = new byte[64 * 1024];
            try
            {
                for (long i = 0; i < batches; i++)
                {
                    ReadExactly(socket, size);
                    int n = BinaryPrimitives.ReadInt32BigEndian(size);
                    if (n > body.Length)
                        body = new byte[n];
                    ReadExactly(socket, body.AsSpan(0, n));
                    short error = ProduceError(body.AsSpan(0, n), out int correlation);
                    if (correlation != (int)i || error != 0)
                    {
                        failure = $"response {correlation} (expected {i}): error code {error}";
                        Wake(slots);
                        return;
                    }
                    Interlocked.Increment(ref answered);
                    slots.Release();
                }
            }
            catch (Exception e)
            {
                failure = e.Message;
                Wake(slots);
            }
        })
        { IsBackground = true };

        long before = Load.EndOffsets(broker.Bootstrap, [new TopicPartition(topic, 0)]);
        double cpu0 = broker.CpuSeconds();
        var idle0 = MachineCpu.Read();
        var sw = Stopwatch.StartNew();
        reader.Start();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (long i = 0; i < batches && failure is null; i++)
        {
            slots.Wait();
            // Every request differs as a real producer's do: its correlation id, timestamp and (idempotent) base
            // sequence, with the CRC recomputed for both kinds so the client does the same work.
            BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(8), (int)i);
            BinaryPrimitives.WriteInt64BigEndian(b[27..], now);
            BinaryPrimitives.WriteInt64BigEndian(b[35..], now);
            if (idempotent)
                BinaryPrimitives.WriteInt32BigEndian(b[53..], (int)(i * perBatch % int.MaxValue));
            BinaryPrimitives.WriteUInt32BigEndian(b[17..], Crc32C.Compute(b[21..]));
            socket.Send(frame);
        }
        reader.Join();
        sw.Stop();
        double cpu = broker.CpuSeconds() - cpu0;
        double idle = MachineCpu.IdlePercentSince(idle0);
        if (failure is not null)
            throw new InvalidOperationException($"{name}: {failure}");
        long stored = Load.EndOffsets(broker.Bootstrap, [new TopicPartition(topic, 0)]) - before;
        if (stored != records)
            throw new InvalidOperationException($"{name}: {records} records acknowledged but the end offset grew by {stored}");
        return new RunResult(name, records, records * recordBytes, sw.Elapsed.TotalSeconds, cpu, broker.PeakRssMiB(), MachineIdlePercent: idle);
    }

    static void Wake(SemaphoreSlim slots)
    {
        try
        {
            slots.Release();
        }
        catch (SemaphoreFullException)
        {
            // the sender is not waiting: it sees the failure before its next request
        }
    }

    static long InitProducerId(Socket socket)
    {
        var w = new List<byte>();
        Header(w, 22, 0, -1);
        Int16(w, -1); // transactional_id: null
        Int32(w, 60000); // transaction_timeout_ms
        byte[] frame = Frame(w);
        socket.Send(frame);
        var size = new byte[4];
        ReadExactly(socket, size);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
        ReadExactly(socket, body);
        // correlation id, throttle_time_ms, error_code, producer_id, producer_epoch
        short error = BinaryPrimitives.ReadInt16BigEndian(body.AsSpan(8));
        if (error != 0)
            throw new InvalidOperationException($"InitProducerId: error code {error}");
        return BinaryPrimitives.ReadInt64BigEndian(body.AsSpan(10));
    }

    /// <summary>Produce v8, acks=-1, one topic, partition 0; <paramref name="batchAt"/> is where the batch starts.</summary>
    static byte[] ProduceFrame(string topic, byte[] batch, out int batchAt)
    {
        var w = new List<byte>();
        Header(w, 0, 8, 0);
        Int16(w, -1); // transactional_id
        Int16(w, -1); // acks=all
        Int32(w, 30000);
        Int32(w, 1);
        String(w, topic);
        Int32(w, 1);
        Int32(w, 0); // partition
        Int32(w, batch.Length);
        batchAt = w.Count + 4;
        w.AddRange(batch);
        return Frame(w);
    }

    /// <summary>The error code of a Produce v8 response's only partition.</summary>
    static short ProduceError(ReadOnlySpan<byte> r, out int correlation)
    {
        correlation = BinaryPrimitives.ReadInt32BigEndian(r);
        int p = 4 + 4; // correlation id, topics count
        p += 2 + BinaryPrimitives.ReadInt16BigEndian(r[p..]); // topic name
        p += 4 + 4; // partitions count, index
        return BinaryPrimitives.ReadInt16BigEndian(r[p..]);
    }

    /// <summary>An uncompressed RecordBatch v2 of <paramref name="count"/> keyless records.</summary>
    static byte[] Batch(byte[] value, int count, long producerId)
    {
        var records = new List<byte>();
        var body = new List<byte>();
        for (int i = 0; i < count; i++)
        {
            body.Clear();
            body.Add(0); // attributes
            Varint(body, 0); // timestamp delta
            Varint(body, i); // offset delta
            Varint(body, -1); // key: null
            Varint(body, value.Length);
            body.AddRange(value);
            Varint(body, 0); // headers
            Varint(records, body.Count);
            records.AddRange(body);
        }
        var batch = new byte[61 + records.Count];
        var s = batch.AsSpan();
        BinaryPrimitives.WriteInt32BigEndian(s[8..], batch.Length - 12);
        BinaryPrimitives.WriteInt32BigEndian(s[12..], -1);
        s[16] = 2;
        BinaryPrimitives.WriteInt32BigEndian(s[23..], count - 1);
        BinaryPrimitives.WriteInt64BigEndian(s[43..], producerId);
        BinaryPrimitives.WriteInt16BigEndian(s[51..], (short)(producerId >= 0 ? 0 : -1));
        BinaryPrimitives.WriteInt32BigEndian(s[53..], producerId >= 0 ? 0 : -1);
        BinaryPrimitives.WriteInt32BigEndian(s[57..], count);
        records.CopyTo(batch, 61);
        return batch;
    }

    static void Header(List<byte> w, short apiKey, short version, int correlation)
    {
        Int16(w, apiKey);
        Int16(w, version);
        Int32(w, correlation);
        String(w, "kiou-bench-raw");
    }

    static byte[] Frame(List<byte> w)
    {
        var frame = new byte[4 + w.Count];
        BinaryPrimitives.WriteInt32BigEndian(frame, w.Count);
        w.CopyTo(frame, 4);
        return frame;
    }

    static void Int16(List<byte> w, short v) => w.AddRange([(byte)(v >> 8), (byte)v]);

    static void Int32(List<byte> w, int v) => w.AddRange([(byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v]);

    static void String(List<byte> w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        Int16(w, (short)bytes.Length);
        w.AddRange(bytes);
    }

    static void Varint(List<byte> output, long value)
    {
        ulong v = (ulong)((value << 1) ^ (value >> 63));
        while (v >= 0x80)
        {
            output.Add((byte)(v | 0x80));
            v >>= 7;
        }
        output.Add((byte)v);
    }

    static void ReadExactly(Socket s, Span<byte> buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = s.Receive(buffer[read..]);
            if (n == 0)
                throw new EndOfStreamException("the broker closed the connection");
            read += n;
        }
    }
}
