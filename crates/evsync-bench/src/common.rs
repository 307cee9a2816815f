//! Pieces every scenario shares: the clock, the WebSocket client, frame
//! encoding with Effect's chunking, payloads, percentiles, process probes
//! (RSS, open files, CPU time) and the result line.

use bytes::Bytes;
use evsync_core::chunk::ChunkLimits;
use evsync_core::proto::v3::framer::{self, FrameDecoder};
use evsync_core::time::Timestamp;
use evsync_core::wire::{EncryptedEntry, Request, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type WsSink = SplitSink<Ws, Message>;
pub type WsStream = SplitStream<Ws>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

/// Error from a message.
pub fn err(msg: impl Into<String>) -> BoxError {
    msg.into().into()
}

// ---------------------------------------------------------------- clock

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's first call: the one clock shared by the
/// writer that stamps an entry and the subscriber that receives it.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------- sockets

/// `ws://host:port` + `/event-log/<tenant>`.
pub fn tenant_url(base: &str, tenant: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/event-log").unwrap_or(base);
    format!("{base}/event-log/{tenant}")
}

/// Opens a WebSocket (Nagle off, no message size limit: catch-up messages
/// of Effect's server can be a whole log).
pub async fn connect(url: &str) -> Result<Ws> {
    connect_with(url, None).await
}

/// [`connect`] with tungstenite's read buffer set to `read_buffer` bytes
/// (default 128 KiB, which tungstenite zero-fills on its first read, so
/// every socket costs that much RSS: the idle scenarios hold thousands).
pub async fn connect_with(url: &str, read_buffer: Option<usize>) -> Result<Ws> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = None;
    config.max_frame_size = None;
    if let Some(size) = read_buffer {
        config.read_buffer_size = size;
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(ws)
}

/// Decodes incoming frames with evsync-core's one v3 framer, reassembling
/// `ChunkedMessage` parts, and counts the wire bytes.
pub struct Incoming {
    decoder: FrameDecoder<Response>,
    /// Wire bytes received (frames, before reassembly).
    pub wire_bytes: u64,
}

impl Default for Incoming {
    fn default() -> Self {
        Self::new()
    }
}

impl Incoming {
    pub fn new() -> Self {
        // A catch-up from Effect's server is ONE message holding the whole
        // log: allow it (the default limits, sized for a server facing
        // untrusted clients, would refuse it).
        let limits = ChunkLimits {
            max_parts: u32::MAX,
            max_message_bytes: usize::MAX / 2,
            max_incomplete_messages: 64,
            max_incomplete_bytes: usize::MAX / 2,
            max_incomplete_age_ms: u64::MAX / 4,
        };
        Incoming {
            decoder: FrameDecoder::new(limits),
            wire_bytes: 0,
        }
    }

    /// Decodes one WebSocket message. `Ok(None)` for control frames and
    /// incomplete chunked messages.
    pub fn decode(&mut self, msg: Message) -> Result<Option<Response>> {
        let frame: Bytes = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            Message::Close(frame) => return Err(err(format!("server closed: {frame:?}"))),
            _ => return Ok(None),
        };
        self.wire_bytes += frame.len() as u64;
        Ok(self
            .decoder
            .decode(&frame, Timestamp(now_ns() / 1_000_000))?)
    }
}

/// Reads until the next complete response.
pub async fn next_response(stream: &mut WsStream, incoming: &mut Incoming) -> Result<Response> {
    loop {
        let msg = stream
            .next()
            .await
            .ok_or_else(|| err("connection closed by the server"))??;
        if let Some(resp) = incoming.decode(msg)? {
            return Ok(resp);
        }
    }
}

/// Connects and waits for `Hello`.
pub async fn connect_hello(url: &str) -> Result<(WsSink, WsStream, Incoming)> {
    connect_hello_with(url, None).await
}

/// [`connect_hello`] with a given read buffer size (see [`connect_with`]).
pub async fn connect_hello_with(
    url: &str,
    read_buffer: Option<usize>,
) -> Result<(WsSink, WsStream, Incoming)> {
    let ws = connect_with(url, read_buffer).await?;
    let (sink, mut stream) = ws.split();
    let mut incoming = Incoming::new();
    match next_response(&mut stream, &mut incoming).await? {
        Response::Hello { .. } => Ok((sink, stream, incoming)),
        other => Err(err(format!("expected Hello, got {}", other.tag()))),
    }
}

/// Encodes a request into the frames Effect's client would send (with
/// evsync-core's one v3 framer): one frame, or `ChunkedMessage` parts when
/// it exceeds 512,000 bytes, numbered with the next value of `chunk_id`,
/// which the caller keeps per connection.
pub fn frames_for(req: &Request, chunk_id: &mut i64) -> Vec<Bytes> {
    framer::encode(req, || {
        *chunk_id += 1;
        *chunk_id
    })
}

/// Sends frames (all but the last are fed, then one flush).
pub async fn send_frames(sink: &mut WsSink, frames: Vec<Bytes>) -> Result<()> {
    let n = frames.len();
    for (i, f) in frames.into_iter().enumerate() {
        if i + 1 == n {
            sink.send(Message::Binary(f)).await?;
        } else {
            sink.feed(Message::Binary(f)).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- payloads

/// Opaque random bytes, sliced without copying.
pub struct Payloads {
    pool: Bytes,
    size: usize,
    next: usize,
    /// Distinguishes entry ids of different writers and runs.
    prefix: [u8; 8],
    counter: u64,
}

/// Random bytes shared by every [`Payloads`] of the process: filling a
/// fresh pool per writer would cost the load generator more than the
/// server's work in the many-tenant scenario.
static POOL: OnceLock<Bytes> = OnceLock::new();
const POOL_LEN: usize = 4 << 20;

impl Payloads {
    pub fn new(size: usize) -> Self {
        let shared = POOL.get_or_init(|| {
            let mut pool = vec![0u8; POOL_LEN];
            fill_random(&mut pool);
            Bytes::from(pool)
        });
        let pool = if size * 16 <= POOL_LEN {
            shared.clone()
        } else {
            let mut pool = vec![0u8; size * 16 + size];
            fill_random(&mut pool);
            Bytes::from(pool)
        };
        let mut prefix = [0u8; 8];
        fill_random(&mut prefix);
        Payloads {
            pool,
            size,
            next: (prefix[1] as usize) << 12,
            prefix,
            counter: 0,
        }
    }

    /// A unique 16-byte entry id, a valid UUID v7 (Effect's memory store
    /// stringifies ids with `uuid`, which throws on a wrong version or
    /// variant): random prefix, version 7, variant 10, 56-bit counter.
    pub fn entry_id(&mut self) -> Bytes {
        self.counter += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.prefix);
        id[6] = (id[6] & 0x0f) | 0x70;
        id[8] = 0x80 | (self.prefix[0] & 0x3f);
        id[9..].copy_from_slice(&self.counter.to_be_bytes()[1..]);
        Bytes::copy_from_slice(&id)
    }

    /// `size` random bytes.
    pub fn payload(&mut self) -> Bytes {
        let pool_len = self.pool.len() - self.size;
        let start = self.next % pool_len.max(1);
        self.next = self.next.wrapping_add(4099);
        self.pool.slice(start..start + self.size)
    }

    pub fn entry(&mut self) -> EncryptedEntry {
        EncryptedEntry {
            entry_id: self.entry_id(),
            encrypted_entry: self.payload(),
        }
    }

    /// A 12-byte iv. From a per-thread generator seeded once: a
    /// `getrandom` call per batch was 5 % of the load generator's CPU in
    /// single-entry writes, and the server never reads an iv.
    pub fn iv() -> Bytes {
        thread_local! {
            static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
                let mut seed = [0u8; 8];
                fill_random(&mut seed);
                u64::from_le_bytes(seed) | 1
            });
        }
        let mut iv = [0u8; 12];
        STATE.with(|state| {
            for chunk in iv.chunks_mut(8) {
                let x = xorshift64(state.get());
                state.set(x);
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
        });
        Bytes::copy_from_slice(&iv)
    }
}

pub fn fill_random(buf: &mut [u8]) {
    // getrandom is fast enough for a few MB; fall back to a xorshift if the
    // kernel has no entropy (never on Linux).
    if getrandom::fill(buf).is_err() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ now_ns();
        for b in buf {
            x = xorshift64(x);
            *b = x as u8;
        }
    }
}

/// The state after `x` in Marsaglia's xorshift64 (`x` must not be 0):
/// cheap bytes that only have to look random, never secrets.
fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

// ---------------------------------------------------------------- stats

/// p-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(ns: u64) -> f64 {
    round3(ns as f64 / 1e6)
}

/// The write scenarios' metrics, shared by the server runs and the
/// raw-SQLite ceiling so that their rows compare like for like: `entries`
/// and `bytes` committed in the `secs` of the measured window, and the
/// latencies (ns) of the requests issued in it.
pub fn throughput_metrics(
    m: &mut Map<String, Value>,
    entries: usize,
    bytes: usize,
    secs: f64,
    mut latencies: Vec<u64>,
) {
    latencies.sort_unstable();
    m.insert(
        "entries_per_s".into(),
        json!((entries as f64 / secs).round()),
    );
    m.insert("mb_per_s".into(), json!(round3(bytes as f64 / secs / 1e6)));
    m.insert("ack_p50_ms".into(), json!(ms(percentile(&latencies, 50.0))));
    m.insert("ack_p99_ms".into(), json!(ms(percentile(&latencies, 99.0))));
    m.insert(
        "ack_max_ms".into(),
        json!(ms(latencies.last().copied().unwrap_or(0))),
    );
    m.insert("requests".into(), json!(latencies.len()));
    m.insert("seconds".into(), json!(round3(secs)));
}

/// What a fan-out run counted, reported the same way by the v3 and the v4
/// scenario so that their rows compare like for like.
pub struct FanoutTally<'a> {
    pub subscribers: usize,
    pub rate: u64,
    pub sent: u64,
    pub send_secs: f64,
    pub delivered: u64,
    pub expected: u64,
    /// Frames the deliveries came in (v3 Changes, v4 Chunks).
    pub messages: u64,
    pub delivery_secs: f64,
    pub setup_secs: f64,
    /// Each subscriber's latencies (ns), readable even if it never ended.
    pub latencies: &'a [std::sync::Arc<Mutex<Vec<u64>>>],
}

/// The fan-out scenarios' metrics from a [`FanoutTally`].
pub fn fanout_metrics(m: &mut Map<String, Value>, t: FanoutTally<'_>) {
    let mut lat = Vec::with_capacity(t.delivered as usize);
    for l in t.latencies {
        lat.extend_from_slice(&l.lock().expect("lock"));
    }
    lat.sort_unstable();
    m.insert("subscribers".into(), json!(t.subscribers));
    m.insert("rate".into(), json!(t.rate));
    m.insert("sent".into(), json!(t.sent));
    m.insert(
        "send_rate".into(),
        json!((t.sent as f64 / t.send_secs).round()),
    );
    m.insert("deliveries".into(), json!(t.delivered));
    m.insert(
        "missing".into(),
        json!(t.expected.saturating_sub(t.delivered)),
    );
    if t.messages > 0 {
        m.insert(
            "entries_per_message".into(),
            json!(round1(t.delivered as f64 / t.messages as f64)),
        );
    }
    m.insert(
        "deliveries_per_s".into(),
        json!((t.delivered as f64 / t.delivery_secs).round()),
    );
    m.insert("p50_ms".into(), json!(ms(percentile(&lat, 50.0))));
    m.insert("p99_ms".into(), json!(ms(percentile(&lat, 99.0))));
    m.insert("max_ms".into(), json!(ms(lat.last().copied().unwrap_or(0))));
    m.insert("setup_s".into(), json!(round1(t.setup_secs)));
}

/// What a catch-up run measured, reported the same way by the v3 and the
/// v4 scenario.
pub struct CatchupTally {
    pub entries: u64,
    /// Ciphertext bytes received (what the replica asked for).
    pub payload_bytes: u64,
    /// Bytes on the socket (frames, envelopes, chunking).
    pub wire_bytes: u64,
    pub secs: f64,
    /// Time to the first frame after the request (ns).
    pub first_frame_ns: Option<u64>,
    /// The server's RSS (KiB) before the run and at its peak.
    pub rss_before_kib: Option<u64>,
    pub rss_peak_kib: u64,
}

/// The catch-up scenarios' metrics from a [`CatchupTally`].
pub fn catchup_metrics(m: &mut Map<String, Value>, t: CatchupTally) {
    let secs = t.secs;
    m.insert("entries".into(), json!(t.entries));
    m.insert("seconds".into(), json!(round3(secs)));
    m.insert(
        "mb_per_s".into(),
        json!(round1(t.payload_bytes as f64 / secs / 1e6)),
    );
    m.insert(
        "wire_mb_per_s".into(),
        json!(round1(t.wire_bytes as f64 / secs / 1e6)),
    );
    m.insert(
        "entries_per_s".into(),
        json!((t.entries as f64 / secs).round()),
    );
    m.insert(
        "first_frame_ms".into(),
        json!(ms(t.first_frame_ns.unwrap_or(0))),
    );
    if let (Some(before), true) = (t.rss_before_kib, t.rss_peak_kib > 0) {
        m.insert(
            "server_rss_before_mib".into(),
            json!(round1(before as f64 / 1024.0)),
        );
        m.insert(
            "server_rss_peak_mib".into(),
            json!(round1(t.rss_peak_kib as f64 / 1024.0)),
        );
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// ---------------------------------------------------------------- process probes

/// CPU seconds (user + system) this process used so far.
pub fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// CPU seconds (user + system) process `pid` used so far, from /proc.
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime, stime are 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tck.max(1.0))
}

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Busy and stolen CPU seconds of the whole machine so far, from
/// /proc/stat. Busy is what ran here (user, nice, system, irq, softirq);
/// steal is the time the hypervisor ran something else while this
/// machine's CPUs wanted to run, which a virtual machine's figures and
/// latencies suffer from without any process here being busier.
pub fn machine_cpu_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let total: f64 = fields.iter().take(7).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    let steal = *fields.get(7)?;
    // SAFETY: sysconf has no memory effects.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(((total - idle) / tck, steal / tck))
}

/// CPU-time probes around a measured window.
pub struct CpuProbe {
    wall: Instant,
    load: f64,
    server: Option<(u32, f64)>,
    steal: Option<f64>,
}

impl CpuProbe {
    pub fn start(server_pid: Option<u32>) -> Self {
        CpuProbe {
            wall: Instant::now(),
            load: self_cpu_secs(),
            server: server_pid.and_then(|pid| Some((pid, proc_cpu_secs(pid)?))),
            steal: machine_cpu_secs().map(|(_, steal)| steal),
        }
    }

    /// Adds `load_cpu_pct` (100 = one core busy), `steal_pct` (the
    /// machine's CPU taken by the hypervisor, of all its cores: a run with
    /// much of it measured a slower machine) and, with a server pid,
    /// `server_cpu_pct` to `m`.
    pub fn finish(&self, m: &mut Map<String, Value>) {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        m.insert(
            "load_cpu_pct".into(),
            json!(round1((self_cpu_secs() - self.load) / wall * 100.0)),
        );
        if let (Some(before), Some((_, after))) = (self.steal, machine_cpu_secs()) {
            m.insert(
                "steal_pct".into(),
                json!(round1((after - before) / wall * 100.0)),
            );
        }
        if let Some((pid, before)) = self.server
            && let Some(after) = proc_cpu_secs(pid)
        {
            m.insert(
                "server_cpu_pct".into(),
                json!(round1((after - before) / wall * 100.0)),
            );
        }
    }
}

/// The CPUs this process may run on, as `taskset` shows them (e.g. "1").
pub fn affinity() -> String {
    // SAFETY: sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return "?".into();
        }
        let cpus: Vec<String> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .map(|c| c.to_string())
            .collect();
        cpus.join(",")
    }
}

/// Which CPUs `pid` may run on.
pub fn proc_affinity(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))?
            .split_whitespace()
            .nth(1)?
            .to_owned(),
    )
}

// ---------------------------------------------------------------- results

/// Identifies the result line of one run; also written by the watchdog if
/// the run does not finish in time.
#[derive(Clone, Debug)]
pub struct RunId {
    pub scenario: &'static str,
    pub case: String,
    pub label: String,
    pub out: Option<PathBuf>,
}

static OUTPUT: Mutex<()> = Mutex::new(());

/// Emits one result line (JSON) on stdout and appends it to `--out`.
pub fn emit(id: &RunId, status: &str, metrics: Map<String, Value>, note: Option<String>) {
    let mut line = json!({
        "scenario": id.scenario,
        "case": id.case,
        "label": id.label,
        "status": status,
        "metrics": Value::Object(metrics),
        "load_cpus": affinity(),
    });
    if let Some(note) = note {
        line["note"] = json!(note);
    }
    let text = line.to_string();
    let _guard = OUTPUT.lock();
    println!("{text}");
    let _ = std::io::stdout().flush();
    if let Some(path) = &id.out
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{text}");
    }
}

/// Starts a thread that, after `limit`, writes a `timeout` result and ends
/// the process: a run never hangs the harness.
pub fn watchdog(id: RunId, limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        emit(
            &id,
            "timeout",
            Map::new(),
            Some(format!("did not finish within {} s", limit.as_secs())),
        );
        std::process::exit(3);
    });
}

/// Human-readable progress on stderr.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}
