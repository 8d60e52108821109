#!/usr/bin/python3
"""Reads __consumer_offsets with kcat and decodes every record with Kafka's own JSON schemas, independently of the broker.

Usage: consumer_offsets_decode.py BOOTSTRAP
Runs `kcat -C -t __consumer_offsets -o beginning -e` with a length-prefixed output format (keys and values are binary),
then decodes each key as int16 version + OffsetCommitKey (versions 0-1) or GroupMetadataKey (version 2) and each value
as int16 version + the matching value schema, interpreting the schema files in tests/compat/schemas (copies of Kafka's
group-coordinator schemas) generically: versions, int8/16/32/64, string, bytes, arrays, structs, nullable, and the
compact/tagged encoding of flexible versions. Prints one JSON object per record on stdout:
  {"partition": p, "offset": o, "key_type": "OffsetCommitKey", "key_version": 1, "key": {...},
   "value_version": 3, "value": {...} or null}
Run by tests/Kiou.Broker.Tests/ConsumerOffsetsTopicTests.cs. Exits 1 with the reason on stderr on anything undecodable.
"""
import json
import os
import re
import struct
import subprocess
import sys

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")


def load_schema(name):
    with open(os.path.join(SCHEMAS, name + ".json"), encoding="utf-8") as f:
        text = "\n".join(line for line in f if not line.lstrip().startswith("//"))
    return json.loads(text)


def parse_versions(spec):
    """'0+', '1-3', '2', 'none' -> (low, high) or None."""
    if spec is None or spec == "none":
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), 1 << 15
    if "-" in spec:
        low, high = spec.split("-")
        return int(low), int(high)
    return int(spec), int(spec)


def in_versions(spec, version):
    r = parse_versions(spec)
    return r is not None and r[0] <= version <= r[1]


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"truncated: need {n} bytes at {self.pos} of {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(">" + fmt, self.take(size))[0]

    def uvarint(self):
        shift = 0
        result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise ValueError("varint too long")


INTS = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint16": "H", "uint32": "I", "float64": "d"}


class Decoder:
    def __init__(self, schema):
        self.schema = schema
        self.structs = {s["name"]: s for s in schema.get("commonStructs", [])}

    def decode(self, data, version):
        valid = parse_versions(self.schema["validVersions"])
        if not valid[0] <= version <= valid[1]:
            raise ValueError(f"{self.schema['name']} has no version {version}")
        flexible = in_versions(self.schema.get("flexibleVersions"), version)
        r = Reader(data)
        out = self.fields(r, self.schema["fields"], version, flexible)
        if r.pos != len(data):
            raise ValueError(f"{self.schema['name']} v{version}: {len(data) - r.pos} bytes left over")
        return out

    def fields(self, r, fields, version, flexible):
        out = {}
        tagged = {}
        for f in fields:
            if not in_versions(f["versions"], version):
                continue
            if "tag" in f and in_versions(f.get("taggedVersions"), version):
                tagged[f["tag"]] = f
                continue
            out[f["name"]] = self.value(r, f, f["type"], version, flexible)
        if flexible:
            for _ in range(r.uvarint()):
                tag = r.uvarint()
                size = r.uvarint()
                body = r.take(size)
                if tag in tagged:
                    f = tagged[tag]
                    out[f["name"]] = self.value(Reader(body), f, f["type"], version, flexible)
        return out

    def value(self, r, f, type_, version, flexible):
        nullable = in_versions(f.get("nullableVersions"), version)
        if type_ in INTS:
            return r.int(INTS[type_])
        if type_ == "bool":
            return r.take(1)[0] != 0
        if type_ in ("string", "bytes"):
            if flexible:
                n = r.uvarint() - 1
            else:
                n = r.int("h") if type_ == "string" else r.int("i")
            if n < 0:
                if not nullable:
                    raise ValueError(f"null {f['name']} where the schema does not allow it")
                return None
            raw = r.take(n)
            return raw.decode("utf-8") if type_ == "string" else raw.hex()
        if type_.startswith("[]"):
            n = r.uvarint() - 1 if flexible else r.int("i")
            if n < 0:
                if not nullable:
                    raise ValueError(f"null array {f['name']} where the schema does not allow it")
                return None
            element = type_[2:]
            return [self.value(r, f, element, version, flexible) for _ in range(n)]
        struct_fields = f.get("fields") or self.structs.get(type_, {}).get("fields")
        if struct_fields is None:
            raise ValueError(f"unknown type {type_}")
        return self.fields(r, struct_fields, version, flexible)


KEYS = {0: "OffsetCommitKey", 1: "OffsetCommitKey", 2: "GroupMetadataKey"}
VALUES = {"OffsetCommitKey": "OffsetCommitValue", "GroupMetadataKey": "GroupMetadataValue"}


def decode_record(key, value):
    k = Reader(key)
    key_version = k.int("h")
    key_type = KEYS.get(key_version)
    if key_type is None:
        raise ValueError(f"unknown key version {key_version}")
    decoded = {"key_type": key_type, "key_version": key_version,
               "key": Decoder(load_schema(key_type)).decode(key[2:], key_version)}
    if value is None:
        decoded["value_version"] = None
        decoded["value"] = None
    else:
        value_version = Reader(value).int("h")
        decoded["value_version"] = value_version
        decoded["value"] = Decoder(load_schema(VALUES[key_type])).decode(value[2:], value_version)
    return decoded


HEADER = re.compile(rb"P(\d+) O(\d+) K(-?\d+):")


def main():
    bootstrap = sys.argv[1]
    out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", "__consumer_offsets", "-o", "beginning", "-e", "-q",
                          "-f", "P%p O%o K%K:%k S%S:%s\n"], capture_output=True, timeout=60)
    if out.returncode != 0:
        sys.exit(f"kcat failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    data = out.stdout
    pos = 0
    while pos < len(data):
        m = HEADER.match(data, pos)
        if not m:
            sys.exit(f"unexpected kcat output at byte {pos}: {data[pos:pos + 40]!r}")
        partition, offset, key_len = int(m.group(1)), int(m.group(2)), int(m.group(3))
        pos = m.end()
        key = None if key_len < 0 else data[pos:pos + key_len]
        pos += max(key_len, 0)
        m = re.compile(rb" S(-?\d+):").match(data, pos)
        if not m:
            sys.exit(f"unexpected kcat output at byte {pos}: {data[pos:pos + 40]!r}")
        value_len = int(m.group(1))
        pos = m.end()
        value = None if value_len < 0 else data[pos:pos + value_len]
        pos += max(value_len, 0) + 1  # the newline
        if key is None:
            sys.exit(f"record at partition {partition} offset {offset} has no key")
        record = {"partition": partition, "offset": offset}
        record.update(decode_record(key, value))
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    main()
