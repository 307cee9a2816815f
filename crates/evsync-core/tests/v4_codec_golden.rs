//! Golden vectors of the v4 codec against Effect 4.1.0, both directions.
//!
//! `tests/fixtures/golden-v4` is written by `tools/golden-v4/generate.mjs`
//! with Effect's own codecs: a `manifest.json` of `{name, schema, file,
//! value}` and one frame per vector. Here every frame is decoded by its
//! schema key and compared, as canonical JSON (tools/golden-v4/README.md),
//! with `value`. The other direction: every decoded value, plus Rust-made
//! values, is re-encoded with our encoder into
//! `$CARGO_TARGET_TMPDIR/golden-v4-rust` in the same format, where
//! `tools/golden-v4/check.sh` (`verify-rust.mjs`) has Effect decode them.
//!
//! The conversion to canonical JSON is test code: the library has no JSON.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use evsync_core::proto::v4::*;
use serde_json::{Map, Value as Json, json};

// ------------------------------------------------------------ values ----

/// A decoded vector of any schema key.
#[derive(Clone, Debug, PartialEq)]
enum Decoded {
    FromClient(FromClient),
    FromServer(FromServer),
    HelloResponse(HelloResponse),
    Authenticate(Authenticate),
    WriteSingle(WriteSinglePayload),
    WriteChunked(ChunkedMessage),
    ChangesPayload(ChangesPayload),
    ChangesChunk(Vec<ChangesValue>),
    WriteEntries(WriteEntries),
    WriteEntriesUnencrypted(WriteEntriesUnencrypted),
    RemoteBatches(Vec<EncryptedRemoteBatch>),
    RemoteEntries(Vec<RemoteEntry>),
    WriteAcks(Vec<WriteAck>),
    ExitHello(HelloExit),
    ExitAuthenticate(AuthenticateExit),
    ExitWriteSingle(WriteExit),
    ExitWriteChunked(WriteExit),
    ExitChanges(ChangesExit),
    ProtocolError(EventLogProtocolError),
}

impl Decoded {
    fn decode(schema: &str, frame: &Bytes) -> Result<Decoded, DecodeError> {
        use Decoded as D;
        Ok(match schema {
            "RpcMessage.FromClient" => D::FromClient(FromClient::decode(frame)?),
            "RpcMessage.FromServer" => D::FromServer(FromServer::decode(frame)?),
            "HelloResponse" => D::HelloResponse(decode(frame)?),
            "Authenticate" => D::Authenticate(decode(frame)?),
            "WriteSingle.Payload" => D::WriteSingle(decode(frame)?),
            "WriteChunked.Payload" => D::WriteChunked(decode(frame)?),
            "Changes.Payload" => D::ChangesPayload(decode(frame)?),
            "Changes.Chunk" => D::ChangesChunk(decode(frame)?),
            "WriteEntries" => D::WriteEntries(decode(frame)?),
            "WriteEntriesUnencrypted" => D::WriteEntriesUnencrypted(decode(frame)?),
            "EncryptedRemoteBatches" => D::RemoteBatches(decode(frame)?),
            "RemoteEntries" => D::RemoteEntries(decode(frame)?),
            "WriteAcks" => D::WriteAcks(decode(frame)?),
            "Exit.Hello" => D::ExitHello(decode(frame)?),
            "Exit.Authenticate" => D::ExitAuthenticate(decode(frame)?),
            "Exit.WriteSingle" => D::ExitWriteSingle(decode(frame)?),
            "Exit.WriteChunked" => D::ExitWriteChunked(decode(frame)?),
            "Exit.Changes" => D::ExitChanges(decode(frame)?),
            "EventLogProtocolError" => {
                D::ProtocolError(EventLogProtocolError::decode_standalone(frame)?)
            }
            other => panic!("unknown schema key {other}"),
        })
    }

    fn schema(&self) -> &'static str {
        use Decoded as D;
        match self {
            D::FromClient(_) => "RpcMessage.FromClient",
            D::FromServer(_) => "RpcMessage.FromServer",
            D::HelloResponse(_) => "HelloResponse",
            D::Authenticate(_) => "Authenticate",
            D::WriteSingle(_) => "WriteSingle.Payload",
            D::WriteChunked(_) => "WriteChunked.Payload",
            D::ChangesPayload(_) => "Changes.Payload",
            D::ChangesChunk(_) => "Changes.Chunk",
            D::WriteEntries(_) => "WriteEntries",
            D::WriteEntriesUnencrypted(_) => "WriteEntriesUnencrypted",
            D::RemoteBatches(_) => "EncryptedRemoteBatches",
            D::RemoteEntries(_) => "RemoteEntries",
            D::WriteAcks(_) => "WriteAcks",
            D::ExitHello(_) => "Exit.Hello",
            D::ExitAuthenticate(_) => "Exit.Authenticate",
            D::ExitWriteSingle(_) => "Exit.WriteSingle",
            D::ExitWriteChunked(_) => "Exit.WriteChunked",
            D::ExitChanges(_) => "Exit.Changes",
            D::ProtocolError(_) => "EventLogProtocolError",
        }
    }

    fn encode(&self) -> Vec<u8> {
        use Decoded as D;
        match self {
            D::FromClient(v) => v.encode(),
            D::FromServer(v) => v.encode(),
            D::HelloResponse(v) => encode(v),
            D::Authenticate(v) => encode(v),
            D::WriteSingle(v) => encode(v),
            D::WriteChunked(v) => encode(v),
            D::ChangesPayload(v) => encode(v),
            D::ChangesChunk(v) => encode(v),
            D::WriteEntries(v) => encode(v),
            D::WriteEntriesUnencrypted(v) => encode(v),
            D::RemoteBatches(v) => encode(v),
            D::RemoteEntries(v) => encode(v),
            D::WriteAcks(v) => encode(v),
            D::ExitHello(v) => encode(v),
            D::ExitAuthenticate(v) => encode(v),
            D::ExitWriteSingle(v) | D::ExitWriteChunked(v) => encode(v),
            D::ExitChanges(v) => encode(v),
            D::ProtocolError(v) => v.encode_standalone(),
        }
    }

    fn json(&self) -> Json {
        use Decoded as D;
        match self {
            D::FromClient(v) => from_client(v),
            D::FromServer(v) => from_server(v),
            D::HelloResponse(v) => hello(v),
            D::Authenticate(v) => json!({
                "algorithm": "Ed25519",
                "signature": bin(&v.signature),
                "publicKey": v.public_key,
                "signingPublicKey": bin(&v.signing_public_key),
            }),
            D::WriteSingle(v) => json!({ "data": bin(&v.data) }),
            D::WriteChunked(v) => {
                let mut o = chunked(v);
                o["_tag"] = json!("Chunked");
                o
            }
            D::ChangesPayload(v) => json!({
                "storeId": v.store_id,
                "startSequence": v.start_sequence,
                "publicKey": v.public_key,
            }),
            D::ChangesChunk(v) => Json::Array(v.iter().map(changes_value).collect()),
            D::WriteEntries(v) => json!({
                "storeId": v.store_id,
                "batches": v.batches.iter().map(|b| json!({
                    "iv": bin(&b.iv),
                    "encryptedBatch": bin(&b.encrypted_batch),
                    "entryIds": ids(&b.entry_ids),
                })).collect::<Vec<_>>(),
                "publicKey": v.public_key,
            }),
            D::WriteEntriesUnencrypted(v) => json!({
                "storeId": v.store_id,
                "entries": v.entries.iter().map(entry).collect::<Vec<_>>(),
                "publicKey": v.public_key,
            }),
            D::RemoteBatches(v) => Json::Array(
                v.iter()
                    .map(|b| {
                        json!({
                            "sequence": b.sequence,
                            "iv": bin(&b.iv),
                            "encryptedBatch": bin(&b.encrypted_batch),
                            "entryIds": ids(&b.entry_ids),
                        })
                    })
                    .collect(),
            ),
            D::RemoteEntries(v) => Json::Array(
                v.iter()
                    .map(|e| json!({ "entry": entry(&e.entry), "remoteSequence": e.remote_sequence }))
                    .collect(),
            ),
            D::WriteAcks(v) => acks(v),
            D::ExitHello(v) => exit(v, hello, |e| match *e {}),
            D::ExitAuthenticate(v) | D::ExitChanges(v) => exit(v, |()| Json::Null, protocol_error),
            D::ExitWriteSingle(v) | D::ExitWriteChunked(v) => exit(v, |a| acks(a), protocol_error),
            D::ProtocolError(v) => protocol_error(v),
        }
    }
}

fn bin(b: &[u8]) -> Json {
    json!({ "$bytes": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
}

fn ids(ids: &[Bytes]) -> Json {
    Json::Array(ids.iter().map(|id| bin(id)).collect())
}

fn request_id(id: &RequestId) -> Json {
    match id {
        RequestId::Number(n) => json!(n),
        RequestId::String(s) => json!(s),
    }
}

fn from_client(m: &FromClient) -> Json {
    match m {
        FromClient::Request(r) => {
            let mut o = Map::new();
            o.insert("_tag".into(), json!("Request"));
            o.insert("id".into(), request_id(&r.id));
            o.insert("tag".into(), json!(r.tag));
            o.insert("payload".into(), bin(&r.payload));
            o.insert(
                "headers".into(),
                Json::Array(r.headers.iter().map(|(k, v)| json!([k, v])).collect()),
            );
            if let Some(t) = &r.trace_id {
                o.insert("traceId".into(), json!(t));
            }
            if let Some(s) = &r.span_id {
                o.insert("spanId".into(), json!(s));
            }
            if let Some(s) = r.sampled {
                o.insert("sampled".into(), json!(s));
            }
            if r.is_notification {
                o.insert("isNotification".into(), json!(true));
            }
            if r.discard {
                o.insert("discard".into(), json!(true));
            }
            Json::Object(o)
        }
        FromClient::Ack { request_id: id } => json!({"_tag": "Ack", "requestId": request_id(id)}),
        FromClient::Interrupt { request_id: id } => {
            json!({"_tag": "Interrupt", "requestId": request_id(id)})
        }
        FromClient::Ping => json!({"_tag": "Ping"}),
        FromClient::Eof => json!({"_tag": "Eof"}),
    }
}

fn from_server(m: &FromServer) -> Json {
    match m {
        FromServer::Exit {
            request_id: id,
            exit,
        } => {
            json!({"_tag": "Exit", "requestId": request_id(id), "exit": bin(exit)})
        }
        FromServer::Chunk {
            request_id: id,
            values,
        } => {
            json!({"_tag": "Chunk", "requestId": request_id(id), "values": bin(values)})
        }
        FromServer::Pong => json!({"_tag": "Pong"}),
        FromServer::Defect { defect } => json!({"_tag": "Defect", "defect": bin(defect)}),
    }
}

fn hello(h: &HelloResponse) -> Json {
    let mut o = json!({ "challenge": bin(&h.challenge), "remoteId": bin(&h.remote_id) });
    if h.compaction {
        o["compaction"] = json!(true);
    }
    if let Some(first) = h.first_sequence {
        o["firstSequence"] = json!(first);
    }
    o
}

fn chunked(c: &ChunkedMessage) -> Json {
    json!({ "id": c.id, "part": [c.index, c.total], "data": bin(&c.data) })
}

fn changes_value(v: &ChangesValue) -> Json {
    match v {
        ChangesValue::Single { data } => json!({"_tag": "Single", "data": bin(data)}),
        ChangesValue::Chunked(c) => {
            let mut o = chunked(c);
            o["_tag"] = json!("Chunked");
            o
        }
    }
}

fn entry(e: &Entry) -> Json {
    json!({
        "id": bin(&e.id),
        "event": e.event.as_str(),
        "primaryKey": e.primary_key.as_str(),
        "payload": bin(&e.payload),
    })
}

fn acks(acks: &[WriteAck]) -> Json {
    Json::Array(
        acks.iter()
            .map(|a| json!({"entryId": bin(&a.entry_id), "sequence": a.sequence}))
            .collect(),
    )
}

fn protocol_error(e: &EventLogProtocolError) -> Json {
    let mut o = json!({
        "_tag": "EventLogProtocolError",
        "message": e.message,
        "requestTag": e.request_tag,
        "code": e.code.as_str(),
    });
    if let Some(s) = &e.store_id {
        o["storeId"] = json!(s);
    }
    if let Some(p) = &e.public_key {
        o["publicKey"] = json!(p);
    }
    o
}

/// `Success` without `value` for Void (`success` gives `Null` for it).
fn exit<T, E>(e: &Exit<T, E>, success: impl Fn(&T) -> Json, fail: impl Fn(&E) -> Json) -> Json {
    match e {
        Exit::Success(v) => match success(v) {
            Json::Null => json!({"_tag": "Success"}),
            value => json!({"_tag": "Success", "value": value}),
        },
        Exit::Failure(reasons) => json!({
            "_tag": "Failure",
            "cause": reasons.iter().map(|r| match r {
                Reason::Fail(e) => json!({"_tag": "Fail", "error": fail(e)}),
                Reason::Die(d) => json!({
                    "_tag": "Die",
                    "defect": serde_json::from_str::<Json>(d.as_json_text()).unwrap(),
                }),
                Reason::Interrupt(None) => json!({"_tag": "Interrupt"}),
                Reason::Interrupt(Some(f)) => json!({"_tag": "Interrupt", "fiberId": f}),
            }).collect::<Vec<_>>(),
        }),
    }
}

// ------------------------------------------------------------ fixtures ----

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v4")
}

struct Vector {
    name: String,
    schema: String,
    file: String,
    value: Json,
}

fn manifest() -> Vec<Vector> {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.json")).expect("manifest");
    let entries: Vec<Json> = serde_json::from_str(&text).unwrap();
    entries
        .into_iter()
        .map(|e| Vector {
            name: e["name"].as_str().unwrap().to_owned(),
            schema: e["schema"].as_str().unwrap().to_owned(),
            file: e["file"].as_str().unwrap().to_owned(),
            value: e["value"].clone(),
        })
        .collect()
}

fn read(file: &str) -> Bytes {
    Bytes::from(std::fs::read(fixtures_dir().join(file)).unwrap())
}

/// Decodes every vector; returns them with our re-encoding's byte identity.
fn decoded_vectors() -> Vec<(String, Decoded, bool)> {
    let mut failures = Vec::new();
    let mut out = Vec::new();
    for v in manifest() {
        let frame = read(&v.file);
        match Decoded::decode(&v.schema, &frame) {
            Err(e) => failures.push(format!("{}: {} does not decode: {e}", v.name, v.schema)),
            Ok(d) => {
                let actual = d.json();
                if actual != v.value {
                    failures.push(format!(
                        "{}: decodes to {actual}\n   expected {}",
                        v.name, v.value
                    ));
                }
                let again = d.encode();
                let same = again == frame;
                match Decoded::decode(&v.schema, &Bytes::from(again)) {
                    Ok(back) if back == d => {}
                    other => failures.push(format!("{}: re-encoding decodes to {other:?}", v.name)),
                }
                out.push((v.name, d, same));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    out
}

#[test]
fn every_golden_vector_decodes_to_its_value() {
    let vectors = decoded_vectors();
    assert!(vectors.len() >= 200, "only {} vectors", vectors.len());
    let differing: Vec<&str> = vectors
        .iter()
        .filter(|(_, _, same)| !same)
        .map(|(n, _, _)| n.as_str())
        .collect();
    println!(
        "{} vectors decode to their values; {} re-encode byte-identically; differing: {differing:?}",
        vectors.len(),
        vectors.len() - differing.len()
    );
    // Our writer omits present-but-undefined optionals and never interns
    // strings; everything else is byte-identical to Effect.
    for name in differing {
        assert!(
            name.contains("hello") || name.contains("unenc") || name.contains("undefined"),
            "{name} re-encodes differently"
        );
    }
}

// ------------------------------------------------- the other direction ----

/// A small deterministic generator for Rust-made vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, len: usize) -> Bytes {
        Bytes::from((0..len).map(|_| self.next() as u8).collect::<Vec<u8>>())
    }
    fn text(&mut self) -> String {
        const PIECES: [&str; 6] = ["a", "Todo", "ü", "🙂", "-", "店"];
        (0..self.below(6))
            .map(|_| PIECES[self.below(6) as usize])
            .collect()
    }
    fn sequence(&mut self) -> u64 {
        match self.below(4) {
            0 => self.below(64),
            1 => self.below(1 << 20),
            2 => self.below(1 << 40),
            _ => (1 << 53) - 1 - self.below(100),
        }
    }
    fn ids(&mut self) -> Vec<Bytes> {
        (0..1 + self.below(5)).map(|_| self.bytes(16)).collect()
    }
    fn entry(&mut self, event: &str) -> Entry {
        Entry {
            payload: {
                let len = self.below(300) as usize;
                self.bytes(len)
            },
            id: self.bytes(16),
            primary_key: self.text().into(),
            event: event.into(),
        }
    }
    fn error(&mut self) -> EventLogProtocolError {
        EventLogProtocolError {
            message: self.text(),
            store_id: (self.below(2) == 0).then(|| self.text()),
            request_tag: "EventLog.WriteSingle".into(),
            public_key: (self.below(2) == 0).then(|| self.text()),
            code: [
                ErrorCode::Unauthorized,
                ErrorCode::Forbidden,
                ErrorCode::NotFound,
                ErrorCode::InvalidRequest,
                ErrorCode::InternalServerError,
            ][self.below(5) as usize],
        }
    }
}

fn rust_made() -> Vec<(String, Decoded)> {
    let mut rng = Rng(0x5eed_0004_2024_0001);
    let mut out = Vec::new();
    let mut push = |name: &str, d: Decoded| out.push((format!("rust-{name}"), d));
    let acks: Vec<WriteAck> = (0..300)
        .map(|_| WriteAck {
            sequence: rng.sequence(),
            entry_id: rng.bytes(16),
        })
        .collect();
    push("write-acks-300", Decoded::WriteAcks(acks.clone()));
    push(
        "exit-write-single-acks-300",
        Decoded::ExitWriteSingle(Exit::Success(acks)),
    );
    let batches: Vec<EncryptedRemoteBatch> = (0..40)
        .map(|i| EncryptedRemoteBatch {
            sequence: rng.sequence(),
            iv: rng.bytes(12),
            encrypted_batch: rng.bytes(if i == 0 { 70_000 } else { i * 37 }),
            entry_ids: rng.ids(),
        })
        .collect();
    push("remote-batches-40", Decoded::RemoteBatches(batches.clone()));
    let batch_frame = Bytes::from(encode(&batches));
    push(
        "changes-chunk-single-large",
        Decoded::ChangesChunk(vec![ChangesValue::Single {
            data: batch_frame.clone(),
        }]),
    );
    push(
        "changes-chunk-chunked-pieces",
        Decoded::ChangesChunk(
            batch_frame
                .chunks(30_000)
                .enumerate()
                .map(|(i, piece)| {
                    ChangesValue::Chunked(ChunkedMessage {
                        id: 7,
                        index: i as u64,
                        total: batch_frame.len().div_ceil(30_000) as u64,
                        data: Bytes::copy_from_slice(piece),
                    })
                })
                .collect(),
        ),
    );
    push(
        "write-entries-batches",
        Decoded::WriteEntries(WriteEntries {
            store_id: "default".into(),
            batches: (0..20)
                .map(|i| EncryptedBatch {
                    iv: rng.bytes(12),
                    encrypted_batch: rng.bytes(i * 100),
                    entry_ids: rng.ids(),
                })
                .collect(),
            public_key: rng.text(),
        }),
    );
    let events = ["TodoCreated", "TodoDone", "ü-🙂"];
    let entries: Vec<Entry> = (0..100).map(|i| rng.entry(events[i % 3])).collect();
    push(
        "write-entries-unencrypted-100",
        Decoded::WriteEntriesUnencrypted(WriteEntriesUnencrypted {
            store_id: rng.text(),
            entries: entries.clone(),
            public_key: rng.text(),
        }),
    );
    push(
        "remote-entries-100",
        Decoded::RemoteEntries(
            entries
                .into_iter()
                .map(|entry| RemoteEntry {
                    entry,
                    remote_sequence: rng.sequence(),
                })
                .collect(),
        ),
    );
    for i in 0..20 {
        let error = rng.error();
        push(&format!("error-{i}"), Decoded::ProtocolError(error.clone()));
        push(
            &format!("exit-changes-{i}"),
            Decoded::ExitChanges(Exit::Failure(vec![
                Reason::Fail(error),
                Reason::Die(Defect::message(&rng.text())),
                Reason::Interrupt(Some(rng.below(1 << 40))),
                Reason::Interrupt(None),
            ])),
        );
    }
    let mut request = Request::new(
        RequestId::Number((1 << 53) - 1),
        "EventLog.WriteSingle",
        Bytes::from(encode(&WriteSinglePayload {
            data: rng.bytes(600_000),
        })),
    );
    request.headers = vec![("k".into(), "v".repeat(200))];
    push(
        "request-large-payload",
        Decoded::FromClient(FromClient::Request(request)),
    );
    push(
        "hello-response-all",
        Decoded::HelloResponse(HelloResponse {
            challenge: rng.bytes(32),
            compaction: true,
            remote_id: rng.bytes(16),
            first_sequence: Some(1),
        }),
    );
    push(
        "chunked-payload",
        Decoded::WriteChunked(ChunkedMessage {
            id: -5,
            index: 3,
            total: 4,
            data: rng.bytes(1000),
        }),
    );
    out
}

/// Writes every golden value and the Rust-made ones, encoded by our
/// encoder, for `tools/golden-v4/verify-rust.mjs`.
#[test]
fn write_rust_encoded_frames_for_effect() {
    let mut values: Vec<(String, Decoded)> = decoded_vectors()
        .into_iter()
        .map(|(name, d, _)| (name, d))
        .collect();
    values.extend(rust_made());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-v4-rust");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = Vec::new();
    for (name, d) in &values {
        let frame = d.encode();
        let back = Decoded::decode(d.schema(), &Bytes::from(frame.clone()))
            .unwrap_or_else(|e| panic!("{name}: our own frame does not decode: {e}"));
        assert_eq!(&back, d, "{name}");
        let file = format!("{name}.bin");
        std::fs::write(dir.join(&file), &frame).unwrap();
        manifest.push(json!({"name": name, "schema": d.schema(), "file": file, "value": d.json()}));
    }
    // Written last: its presence means the frames are complete.
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    println!("wrote {} frames to {}", values.len(), dir.display());
}
