//! `evsync smoke`: the Rust counterpart of the original worker's smoke test.
//! Two replicas of one fresh identity connect; one appends; the other must
//! receive it (decrypted, same payload) within the timeout.

use super::args::{Protocol, ProtocolArgs, RemoteArgs, parse_duration};
use super::replica::Replica;
use crate::connection::ConnectTimings;
use crate::identity::Identity;
use crate::{msgpack, v4};
use evsync_core::wire::Sequence;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

#[derive(clap::Args, Debug)]
#[command(
    long_about = "Check a deployment end to end: two replicas with a fresh shared identity connect \
        to URL/TENANT, one appends an entry, the other must receive and decrypt it within \
        --timeout. Prints the timings (connect, hello, ack, delivery) and exits 0, or exits 1 \
        with the reason. Reads CLOUDFLARE_SYNC_URL, CLOUDFLARE_SYNC_TENANT and \
        CLOUDFLARE_SYNC_TOKEN like the original smoke test. With --protocol v4 the replicas \
        speak Effect 4's protocol (Hello, Ed25519 Authenticate, an encrypted batch, the \
        Changes stream) to URL/TENANT, e.g. ws://127.0.0.1:8787/v4/event-log on evsync."
)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub protocol: ProtocolArgs,

    /// Time allowed for the whole check, e.g. 10s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// What a successful smoke test measured.
#[derive(Clone, Debug)]
pub struct SmokeReport {
    pub url: String,
    pub protocol: Protocol,
    /// The store (v4).
    pub store_id: Option<String>,
    pub public_key: String,
    pub writer: ConnectTimings,
    pub reader: ConnectTimings,
    /// From the write call to its Ack.
    pub ack: Duration,
    pub sequence: Sequence,
    /// From the write call to the reader receiving the entry.
    pub delivery: Duration,
}

impl std::fmt::Display for SmokeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let conn =
            |t: &ConnectTimings| format!("connect {}, hello {}", ms(t.websocket), ms(t.hello));
        match &self.store_id {
            None => writeln!(f, "smoke: {} (publicKey {})", self.url, self.public_key)?,
            Some(store) => writeln!(
                f,
                "smoke: {} (v4, publicKey {}, store {store})",
                self.url, self.public_key
            )?,
        }
        writeln!(f, "  writer:   {}", conn(&self.writer))?;
        writeln!(f, "  reader:   {}", conn(&self.reader))?;
        writeln!(
            f,
            "  ack:      {} (sequence {})",
            ms(self.ack),
            self.sequence
        )?;
        writeln!(f, "  delivery: {} after the write", ms(self.delivery))?;
        write!(f, "ok")
    }
}

pub(crate) async fn run(args: SmokeArgs) -> ExitCode {
    if let Err(e) = args.remote.endpoint() {
        return super::fail(e, super::EXIT_USAGE);
    }
    match smoke_with(&args.remote, &args.protocol, args.timeout).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(reason) => super::fail(format!("smoke test failed: {reason}"), super::EXIT_FAILURE),
    }
}

/// Runs the check over v3; the error is the reason, one line.
pub async fn smoke(remote: &RemoteArgs, timeout: Duration) -> Result<SmokeReport, String> {
    let v3 = ProtocolArgs {
        protocol: Protocol::V3,
        store_id: "default".into(),
    };
    smoke_with(remote, &v3, timeout).await
}

/// Runs the check over `protocol`; the error is the reason, one line.
pub async fn smoke_with(
    remote: &RemoteArgs,
    protocol: &ProtocolArgs,
    timeout: Duration,
) -> Result<SmokeReport, String> {
    let deadline = Instant::now() + timeout;
    let within = |what: &'static str| {
        move |_: tokio::time::error::Elapsed| {
            format!("timed out after {timeout:?} waiting for {what}")
        }
    };
    let identity = Identity::generate();
    let config = remote.config(identity.clone()).map_err(|e| e.to_string())?;
    let url = config.url.clone();
    let left = || deadline.saturating_duration_since(Instant::now());

    let writer = tokio::time::timeout_at(
        deadline,
        Replica::connect(config.clone().with_connect_timeout(left()), protocol),
    )
    .await
    .map_err(within("the writer to connect"))?
    .map_err(|e| format!("writer: cannot connect to {url}: {e}"))?;
    let reader = tokio::time::timeout_at(
        deadline,
        Replica::connect(config.with_connect_timeout(left()), protocol),
    )
    .await
    .map_err(within("the reader to connect"))?
    .map_err(|e| format!("reader: cannot connect to {url}: {e}"))?;
    let mut entries = reader.subscribe().map_err(|e| e.to_string())?;

    let nonce = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::json!({ "smoke": nonce, "sentAt": now_millis() });
    let payload_bytes = match protocol.protocol {
        Protocol::V3 => msgpack::encode_json(&payload),
        Protocol::V4 => v4::payload::encode_json(&payload)?,
    };
    let started = Instant::now();
    let receipt = tokio::time::timeout_at(
        deadline,
        writer.write("SmokeTest".into(), nonce.clone(), payload_bytes.clone()),
    )
    .await
    .map_err(within("the Ack"))?
    .map_err(|e| format!("write failed: {e}"))?;
    let ack = started.elapsed();

    let delivery = tokio::time::timeout_at(deadline, async {
        while let Some(item) = entries.recv().await {
            let entry = item.map_err(|e| format!("reader could not open an entry: {e}"))?;
            if entry.id != receipt.entry_id {
                continue;
            }
            if entry.payload != payload_bytes || entry.primary_key != nonce {
                return Err("the delivered entry differs from the written one".to_string());
            }
            return Ok(started.elapsed());
        }
        Err("the reader stopped before the entry arrived".to_string())
    })
    .await
    .map_err(within("the reader to receive the entry"))??;

    writer.close().await;
    reader.close().await;
    Ok(SmokeReport {
        url,
        protocol: protocol.protocol,
        store_id: (protocol.protocol == Protocol::V4).then(|| protocol.store_id.clone()),
        public_key: identity.public_key().to_owned(),
        writer: writer.connect_timings(),
        reader: reader.connect_timings(),
        ack,
        sequence: receipt.sequence,
        delivery,
    })
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
