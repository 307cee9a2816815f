//! Golden vectors: the codec against Effect's own output, both directions.
//!
//! `tests/fixtures/golden` is produced by `tools/golden/generate.mjs` with
//! Effect's `encodeRequest` / `encodeResponse` (plus hand-made frames Effect
//! must accept or reject). Here every frame is decoded to its described
//! value and every value re-encoded to the byte-identical frame, which is
//! what proves msgpackr compatibility of our encoder. The other direction:
//! Rust-encoded frames for all those values and for Rust-made pseudo-random
//! values are written to `$CARGO_TARGET_TMPDIR/golden-rust`, where
//! `tools/golden/check.sh` has Effect decode and re-encode them.

use bytes::Bytes;
use evsync_core::codec::{
    DecodeError, decode_request, decode_response, encode_request, encode_response,
    request_encoded_len, response_encoded_len,
};
use evsync_core::wire::{ChunkedMessage, EncryptedEntry, RemoteEntry, RemoteId, Request, Response};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- JSON ----

/// Just enough JSON for the manifest (numbers kept as their text).
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn field(&self, key: &str) -> &Json {
        self.get(key)
            .unwrap_or_else(|| panic!("manifest entry without {key:?}"))
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a JSON string, found {other:?}"),
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("expected a JSON array, found {other:?}"),
        }
    }

    fn int(&self) -> i128 {
        match self {
            Json::Num(n) => n.parse().unwrap_or_else(|_| panic!("not an integer: {n}")),
            other => panic!("expected a JSON number, found {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing JSON");
        v
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.s[self.i], c,
            "JSON: expected {} at {}",
            c as char, self.i
        );
        self.i += 1;
    }

    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(fields);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.eat(b':');
                    fields.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(fields);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(items);
                }
                loop {
                    items.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(items);
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => {
                self.i += 4;
                Json::Bool(true)
            }
            b'f' => {
                self.i += 5;
                Json::Bool(false)
            }
            b'n' => {
                self.i += 4;
                Json::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                Json::Num(String::from_utf8(self.s[start..self.i].to_vec()).unwrap())
            }
        }
    }

    fn hex4(&mut self) -> u32 {
        let h = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
        self.i += 4;
        u32::from_str_radix(h, 16).unwrap()
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = Vec::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).unwrap(),
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    let ch = match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hi = self.hex4();
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                assert_eq!(&self.s[self.i..self.i + 2], b"\\u");
                                self.i += 2;
                                let lo = self.hex4();
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap()
                        }
                        other => other as char,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ------------------------------------------------- values as plain trees ----

/// A message in Effect's encoded-side shape, to compare with the manifest
/// descriptions and to describe Rust-made values for verify-rust.mjs.
#[derive(Clone, Debug)]
enum Plain {
    Int(i128),
    Str(String),
    Bin(Bytes),
    Arr(Vec<Plain>),
    Obj(Vec<(&'static str, Plain)>),
}

fn plain_chunk(c: &ChunkedMessage) -> Plain {
    Plain::Obj(vec![
        ("id", Plain::Int(c.id.into())),
        (
            "part",
            Plain::Arr(vec![Plain::Int(c.index.into()), Plain::Int(c.total.into())]),
        ),
        ("data", Plain::Bin(c.data.clone())),
        ("_tag", Plain::Str("ChunkedMessage".into())),
    ])
}

fn plain_request(r: &Request) -> Plain {
    let tag = ("_tag", Plain::Str(r.tag().into()));
    Plain::Obj(match r {
        Request::WriteEntries {
            public_key,
            id,
            iv,
            encrypted_entries,
        } => vec![
            ("publicKey", Plain::Str(public_key.clone())),
            ("id", Plain::Int((*id).into())),
            ("iv", Plain::Bin(iv.clone())),
            (
                "encryptedEntries",
                Plain::Arr(
                    encrypted_entries
                        .iter()
                        .map(|e| {
                            Plain::Obj(vec![
                                ("entryId", Plain::Bin(e.entry_id.clone())),
                                ("encryptedEntry", Plain::Bin(e.encrypted_entry.clone())),
                            ])
                        })
                        .collect(),
                ),
            ),
            tag,
        ],
        Request::RequestChanges {
            public_key,
            start_sequence,
        } => vec![
            ("publicKey", Plain::Str(public_key.clone())),
            ("startSequence", Plain::Int((*start_sequence).into())),
            tag,
        ],
        Request::StopChanges { public_key } => {
            vec![("publicKey", Plain::Str(public_key.clone())), tag]
        }
        Request::Chunked(c) => return plain_chunk(c),
        Request::Ping { id } => vec![("id", Plain::Int((*id).into())), tag],
    })
}

fn plain_response(r: &Response) -> Plain {
    let tag = ("_tag", Plain::Str(r.tag().into()));
    Plain::Obj(match r {
        Response::Hello { remote_id } => vec![
            ("remoteId", Plain::Bin(Bytes::copy_from_slice(&remote_id.0))),
            tag,
        ],
        Response::Ack {
            id,
            sequence_numbers,
        } => vec![
            ("id", Plain::Int((*id).into())),
            (
                "sequenceNumbers",
                Plain::Arr(
                    sequence_numbers
                        .iter()
                        .map(|&s| Plain::Int(s.into()))
                        .collect(),
                ),
            ),
            tag,
        ],
        Response::Changes {
            public_key,
            entries,
        } => vec![
            ("publicKey", Plain::Str(public_key.clone())),
            (
                "entries",
                Plain::Arr(
                    entries
                        .iter()
                        .map(|e| {
                            Plain::Obj(vec![
                                ("sequence", Plain::Int(e.sequence.into())),
                                ("iv", Plain::Bin(e.iv.clone())),
                                ("entryId", Plain::Bin(e.entry_id.clone())),
                                ("encryptedEntry", Plain::Bin(e.encrypted_entry.clone())),
                            ])
                        })
                        .collect(),
                ),
            ),
            tag,
        ],
        Response::Chunked(c) => return plain_chunk(c),
        Response::Pong { id } => vec![("id", Plain::Int((*id).into())), tag],
    })
}

fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn fill(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(7)))
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares a value with its description; pushes differences to `diffs`.
fn compare(actual: &Plain, want: &Json, at: &str, diffs: &mut Vec<String>) {
    match (actual, want) {
        (Plain::Bin(b), Json::Obj(_)) => {
            let ok = if let Some(h) = want.get("$hex") {
                to_hex(b) == h.str()
            } else if let Some(f) = want.get("$fill") {
                let len = f.field("len").int() as usize;
                let seed = f.field("seed").int() as u8;
                b[..] == fill(len, seed)[..]
            } else {
                b.len() as i128 == want.field("$len").int()
                    && fnv1a64(b) == want.field("$fnv1a64").str()
            };
            if !ok {
                diffs.push(format!("{at}: binary of {} bytes differs", b.len()));
            }
        }
        (Plain::Int(n), Json::Num(_)) => {
            if *n != want.int() {
                diffs.push(format!("{at}: expected {want:?}, found {n}"));
            }
        }
        (Plain::Str(s), Json::Str(w)) => {
            if s != w {
                diffs.push(format!("{at}: expected {w:?}, found {s:?}"));
            }
        }
        (Plain::Arr(a), Json::Arr(w)) => {
            if a.len() != w.len() {
                diffs.push(format!(
                    "{at}: expected {} elements, found {}",
                    w.len(),
                    a.len()
                ));
                return;
            }
            for (i, (x, y)) in a.iter().zip(w).enumerate() {
                compare(x, y, &format!("{at}[{i}]"), diffs);
            }
        }
        (Plain::Obj(fields), Json::Obj(wanted)) => {
            for (k, v) in fields {
                match want.get(k) {
                    Some(w) => compare(v, w, &format!("{at}.{k}"), diffs),
                    None => diffs.push(format!("{at}.{k}: not in the description")),
                }
            }
            for (k, _) in wanted {
                if !fields.iter().any(|(f, _)| f == k) {
                    diffs.push(format!("{at}.{k}: missing from the decoded value"));
                }
            }
        }
        _ => diffs.push(format!("{at}: expected {want:?}, found {actual:?}")),
    }
}

fn describe(p: &Plain, out: &mut String) {
    match p {
        Plain::Int(n) => write!(out, "{n}").unwrap(),
        Plain::Str(s) => json_string(out, s),
        Plain::Bin(b) if b.len() <= 64 => write!(out, "{{\"$hex\":\"{}\"}}", to_hex(b)).unwrap(),
        Plain::Bin(b) => write!(
            out,
            "{{\"$len\":{},\"$fnv1a64\":\"{}\"}}",
            b.len(),
            fnv1a64(b)
        )
        .unwrap(),
        Plain::Arr(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                describe(x, out);
            }
            out.push(']');
        }
        Plain::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(out, k);
                out.push(':');
                describe(v, out);
            }
            out.push('}');
        }
    }
}

// ------------------------------------------------------------ fixtures ----

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn read(file: &str) -> Bytes {
    let path = fixtures_dir().join(file);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn manifest_text() -> String {
    std::fs::read_to_string(fixtures_dir().join("manifest.json")).expect("golden manifest")
}

fn manifest() -> Json {
    Parser::parse(&manifest_text())
}

/// A decoded message of either direction.
#[derive(Clone, Debug, PartialEq)]
enum Msg {
    Request(Request),
    Response(Response),
}

impl Msg {
    fn decode(direction: &str, frame: &Bytes) -> Result<Msg, DecodeError> {
        match direction {
            "request" => decode_request(frame).map(Msg::Request),
            "response" => decode_response(frame).map(Msg::Response),
            other => panic!("unknown direction {other}"),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Request(r) => {
                let out = encode_request(r);
                assert_eq!(out.len(), request_encoded_len(r));
                out
            }
            Msg::Response(r) => {
                let out = encode_response(r);
                assert_eq!(out.len(), response_encoded_len(r));
                out
            }
        }
    }

    fn plain(&self) -> Plain {
        match self {
            Msg::Request(r) => plain_request(r),
            Msg::Response(r) => plain_response(r),
        }
    }

    fn direction(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::Response(_) => "response",
        }
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let window = |s: &[u8]| to_hex(&s[i.saturating_sub(4)..(i + 8).min(s.len())]);
    format!(
        "lengths {} vs {}, first difference at byte {i}: ours …{}… vs Effect's …{}…",
        a.len(),
        b.len(),
        window(a),
        window(b)
    )
}

/// Every valid vector, decoded.
fn decoded_vectors(m: &Json) -> Vec<(String, Msg)> {
    m.field("vectors")
        .arr()
        .iter()
        .map(|v| {
            let name = v.field("name").str().to_owned();
            let frame = read(v.field("file").str());
            let msg = Msg::decode(v.field("direction").str(), &frame)
                .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
            (name, msg)
        })
        .collect()
}

#[test]
fn golden_vectors_decode_and_reencode_byte_identically() {
    let m = manifest();
    let vectors = m.field("vectors").arr();
    assert!(vectors.len() > 100, "suspiciously few golden vectors");
    let mut failures = Vec::new();
    for v in vectors {
        let name = v.field("name").str();
        let direction = v.field("direction").str();
        let frame = read(v.field("file").str());
        let msg = match Msg::decode(direction, &frame) {
            Ok(msg) => msg,
            Err(e) => {
                failures.push(format!("{name}: does not decode: {e}"));
                continue;
            }
        };
        let mut diffs = Vec::new();
        compare(&msg.plain(), v.field("value"), "$", &mut diffs);
        if !diffs.is_empty() {
            failures.push(format!(
                "{name}: decoded value differs: {}",
                diffs.join("; ")
            ));
        }
        let want = match v.field("canonical") {
            Json::Bool(true) => frame.clone(),
            _ => read(v.field("canonical_file").str()),
        };
        let ours = msg.encode();
        if ours[..] != want[..] {
            failures.push(format!(
                "{name}: re-encoding differs from Effect's: {}",
                first_difference(&ours, &want)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_chunked_messages_reassemble() {
    let m = manifest();
    let groups = m.field("chunked").arr();
    assert!(!groups.is_empty());
    for g in groups {
        let name = g.field("name").str();
        let direction = g.field("direction").str();
        let chunk_id = g.field("chunk_id").int() as i64;
        let mut joined = Vec::new();
        let mut parts = Vec::new();
        for (i, part_name) in g.field("parts").arr().iter().enumerate() {
            let frame = read(&format!("{}.bin", part_name.str()));
            let part = match Msg::decode(direction, &frame).unwrap() {
                Msg::Request(Request::Chunked(c)) | Msg::Response(Response::Chunked(c)) => c,
                other => panic!("{name}: part {i} is {other:?}"),
            };
            assert_eq!(part.id, chunk_id);
            assert_eq!(part.index as usize, i);
            joined.extend_from_slice(&part.data);
            parts.push(frame);
        }
        let joined = Bytes::from(joined);
        assert_eq!(joined.len() as i128, g.field("len").int(), "{name}");
        assert_eq!(fnv1a64(&joined), g.field("fnv1a64").str(), "{name}");
        let msg = Msg::decode(direction, &joined).unwrap();
        let mut diffs = Vec::new();
        compare(&msg.plain(), g.field("value"), "$", &mut diffs);
        assert!(diffs.is_empty(), "{name}: {}", diffs.join("; "));
        assert!(
            msg.encode()[..] == joined[..],
            "{name}: re-encoding differs"
        );
        // Our splitter cuts exactly where Effect's does.
        let ours = evsync_core::chunk::split(chunk_id, &joined);
        assert_eq!(ours.len(), parts.len(), "{name}");
        for (part, frame) in ours.into_iter().zip(&parts) {
            let encoded = match direction {
                "request" => encode_request(&Request::Chunked(part)),
                _ => encode_response(&Response::Chunked(part)),
            };
            assert!(encoded[..] == frame[..], "{name}: split part differs");
        }
    }
}

#[test]
fn golden_invalid_frames_are_rejected_precisely() {
    let m = manifest();
    let invalid = m.field("invalid").arr();
    assert!(invalid.len() > 20);
    let mut failures = Vec::new();
    for v in invalid {
        let name = v.field("name").str();
        let frame = read(v.field("file").str());
        let want = v.field("error");
        match Msg::decode(v.field("direction").str(), &frame) {
            Ok(msg) => failures.push(format!("{name}: decoded to {msg:?}")),
            Err(e) => {
                if e.kind().as_str() != want.field("kind").str()
                    || e.path() != want.field("path").str()
                {
                    failures.push(format!(
                        "{name}: got {} at {:?} ({e}), expected {} at {:?}",
                        e.kind(),
                        e.path(),
                        want.field("kind").str(),
                        want.field("path").str()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------- Rust → Effect (verify-rust.mjs) ----

/// xorshift64*: reproducible values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Bytes {
        (0..n)
            .map(|_| self.next() as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    fn bin(&mut self) -> Bytes {
        let len = match self.below(10) {
            0 => 0,
            1 => 200 + self.below(70_000) as usize,
            2 => [255, 256, 65_535, 65_536][self.below(4) as usize],
            _ => self.below(48) as usize,
        };
        self.bytes(len)
    }

    fn string(&mut self) -> String {
        const ALPHABET: [&str; 12] = [
            "a",
            "Z",
            "7",
            "-",
            "é",
            "ß",
            "鍵",
            "公",
            "🔑",
            "👩‍💻",
            "\u{0}",
            "\n",
        ];
        let len = match self.below(10) {
            0 => 200 + self.below(2000),
            _ => self.below(40),
        };
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }

    /// A JS-safe id: what Effect can hold exactly, in every msgpack width.
    fn id(&mut self) -> i64 {
        const MAX_SAFE: i64 = (1 << 53) - 1;
        let v = match self.below(8) {
            0 => self.below(128) as i64,
            1 => -(self.below(33) as i64),
            2 => self.below(65_536) as i64 - 32_768,
            3 => self.below(1 << 32) as i64,
            4 => -(self.below(1 << 31) as i64) - 1,
            5 => (self.below(MAX_SAFE as u64) as i64) * if self.below(2) == 0 { 1 } else { -1 },
            6 => MAX_SAFE - self.below(100) as i64,
            _ => [0, 127, 128, 255, 256, 65_535, 65_536, -32, -33, -128, -129]
                [self.below(11) as usize],
        };
        v.clamp(-MAX_SAFE, MAX_SAFE)
    }

    fn seq(&mut self) -> u64 {
        self.id().unsigned_abs()
    }

    fn chunk(&mut self) -> ChunkedMessage {
        ChunkedMessage {
            id: self.id(),
            index: self.below(300) as u32,
            total: 1 + self.below(300) as u32,
            data: self.bin(),
        }
    }

    fn request(&mut self) -> Request {
        match self.below(5) {
            0 => Request::WriteEntries {
                public_key: self.string(),
                id: self.id(),
                iv: self.bytes(12),
                encrypted_entries: (0..self.below(20))
                    .map(|_| EncryptedEntry {
                        entry_id: self.bytes(16),
                        encrypted_entry: self.bin(),
                    })
                    .collect(),
            },
            1 => Request::RequestChanges {
                public_key: self.string(),
                start_sequence: self.seq(),
            },
            2 => Request::StopChanges {
                public_key: self.string(),
            },
            3 => Request::Chunked(self.chunk()),
            _ => Request::Ping { id: self.id() },
        }
    }

    fn response(&mut self) -> Response {
        match self.below(5) {
            0 => Response::Hello {
                remote_id: RemoteId::from_random_bytes(self.bytes(16)[..].try_into().unwrap()),
            },
            1 => Response::Ack {
                id: self.id(),
                sequence_numbers: (0..self.below(40)).map(|_| self.seq()).collect(),
            },
            2 => Response::Changes {
                public_key: self.string(),
                entries: (0..self.below(40))
                    .map(|_| RemoteEntry {
                        sequence: self.seq(),
                        iv: self.bytes(12),
                        entry_id: self.bytes(16),
                        encrypted_entry: self.bin(),
                    })
                    .collect(),
            },
            3 => Response::Chunked(self.chunk()),
            _ => Response::Pong { id: self.id() },
        }
    }
}

fn rust_output_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-rust")
}

/// Writes Rust-encoded frames (every golden value plus pseudo-random ones)
/// for `tools/golden/verify-rust.mjs`, which decodes them with msgpackr and
/// Effect and checks that Effect re-encodes them to the same bytes.
#[test]
fn write_rust_encoded_frames_for_effect() {
    let m = manifest();
    let mut values: Vec<(String, Msg)> = decoded_vectors(&m);
    let mut rng = Rng(0x5eed_2024_0611_0001);
    for i in 0..300 {
        values.push((
            format!("rust-random-request-{i}"),
            Msg::Request(rng.request()),
        ));
        values.push((
            format!("rust-random-response-{i}"),
            Msg::Response(rng.response()),
        ));
    }
    // A large backlog batch, as the engine builds them.
    values.push((
        "rust-changes-2000-entries".into(),
        Msg::Response(Response::Changes {
            public_key: rng.string(),
            entries: (0..2000)
                .map(|i| RemoteEntry {
                    sequence: 1_000_000 + i,
                    iv: rng.bytes(12),
                    entry_id: rng.bytes(16),
                    encrypted_entry: {
                        let len = rng.below(300) as usize;
                        rng.bytes(len)
                    },
                })
                .collect(),
        }),
    ));
    // Every value must round-trip through our own codec first.
    for (name, msg) in &values {
        let again = Msg::decode(msg.direction(), &Bytes::from(msg.encode())).unwrap();
        assert_eq!(&again, msg, "{name}");
    }

    let dir = rust_output_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = String::new();
    write!(
        out,
        "{{\n \"fixture_manifest_fnv1a64\": \"{}\",\n \"vectors\": [\n",
        fnv1a64(manifest_text().as_bytes())
    )
    .unwrap();
    for (i, (name, msg)) in values.iter().enumerate() {
        let file = format!("{name}.bin");
        std::fs::write(dir.join(&file), msg.encode()).unwrap();
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str("  {\"name\":");
        json_string(&mut out, name);
        write!(
            out,
            ",\"direction\":\"{}\",\"file\":\"{file}\",\"value\":",
            msg.direction()
        )
        .unwrap();
        describe(&msg.plain(), &mut out);
        out.push('}');
    }
    out.push_str("\n ]\n}\n");
    // Written last: its presence means the frames are complete.
    std::fs::write(dir.join("manifest.json"), out).unwrap();
}
