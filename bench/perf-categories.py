#!/usr/bin/env python3
"""Attributes perf samples (`perf script` output with call chains, e.g. from
`perf record -e cpu-clock --call-graph dwarf -p <evsync pid>`) to coarse
categories: fsync, SQLite, tungstenite, socket syscalls, codec, engine, ...
Usage: perf script -i perf.data | bench/perf-categories.py"""
import sys, collections
def classify(frames):
    s = " ".join(frames)
    leaf = frames[0] if frames else ""
    kern = leaf.endswith("[kernel.kallsyms]") or "kallsyms" in leaf
    if "fsync" in s or "fdatasync" in s or "jbd2" in s or "blkdev_issue_flush" in s:
        return "fsync (SQLite commit)"
    if "sqlite3" in s or "rusqlite" in s or "evsync_storage_sqlite" in s:
        return "SQLite (kernel: file I/O)" if kern else "SQLite (user)"
    if "memset" in leaf and "tungstenite" in s:
        return "tungstenite read buffer zero-fill (memset)"
    if "tungstenite" in s or "WebSocket" in s:
        return "socket syscalls (send/recv, TCP loopback)" if kern else "WebSocket framing (tungstenite, user)"
    if "evsync_core::codec" in s:
        return "msgpack codec"
    if "evsync_core::proto::v4::schema_binary" in s or "evsync_core::proto::v4::messages" in s or "evsync_core::proto::v4::envelope" in s:
        return "v4 codec (SchemaBinary, envelope)"
    if "ed25519" in s or "curve25519" in s:
        return "v4 session auth (Ed25519)"
    if "evsync_core::chunk" in s:
        return "chunk reassembly"
    if "evsync_core::engine" in s or "evsync_core::storage" in s:
        return "engine (incl. memory store)"
    if "evsync_core::proto::v4" in s or "evsync_core::log" in s:
        return "v4 session layer and log service"
    if "evsync_server" in s:
        return "server glue (actor, channels)"
    if "hyper" in s or "axum" in s:
        return "HTTP / upgrade"
    if kern:
        if "epoll" in s or "schedule" in s or "futex" in s or "switch" in s:
            return "kernel: scheduling, epoll, futex"
        if "tcp" in s or "skb" in s or "net_rx" in s or "loopback" in s or "ip_" in s:
            return "socket syscalls (send/recv, TCP loopback)"
        return "kernel: other"
    if "malloc" in s or "free" in s or "_int_" in s:
        return "allocator"
    if "tokio" in s:
        return "tokio runtime"
    return "other"
counts = collections.Counter(); total = 0; frames = []
def flush():
    global total, frames
    if frames:
        counts[classify(frames)] += 1; total += 1
    frames = []
for line in sys.stdin:
    if not line.strip():
        flush(); continue
    if line[0] not in " \t":
        flush(); continue
    frames.append(line.strip())
flush()
for k, v in counts.most_common():
    print(f"{100*v/total:6.1f}%  {k}")
print(f"({total} samples)")
