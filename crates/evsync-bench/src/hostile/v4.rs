//! The hostile suite's Effect v4 attackers (`/v4/event-log/<tenant>`),
//! beside the v3 ones in the parent module and run with them:
//!
//! - `v4_garbage`: frames that are not the protocol: a declared length of
//!   16 MiB + 1, over the server's frame limit (refused at the prefix,
//!   before any byte is buffered: 1009), a length of 0 (1002), a well-framed body that is no RPC
//!   envelope, a v3 (msgpack) `Ping` sent to the v4 endpoint;
//! - `v4_unauth`: requests before `Authenticate` (`WriteSingle`,
//!   `WriteChunked`, `Changes`, each answered `Forbidden` so that a real
//!   client re-authenticates) and an `Authenticate` whose signature is
//!   wrong (`Forbidden`), then the attacker closes;
//! - `v4_chunk_flood`: authenticated `WriteChunked` pieces of writes never
//!   finished, more than the 8 incomplete ones allowed, or one piece
//!   declaring 4,294,967,295 pieces.

use super::{Ctx, End, await_close};
use crate::common::fill_random;
use crate::v4::client::{
    CHANGES, Conn, Identity, STORE_ID, WRITE_CHUNKED, WRITE_SINGLE, changes_frame, request_frame,
    write_single_frame,
};
use bytes::Bytes;
use evsync_core::proto::v4::schema_binary::frame::frame_with_prefix;
use evsync_core::proto::v4::{
    self as proto, AuthenticateExit, ChunkedMessage, DEFAULT_MAX_FRAME_SIZE, ErrorCode, Exit,
    Reason,
};
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub(super) const TENANT_GARBAGE: &str = "hostile-v4-garbage";
pub(super) const TENANT_UNAUTH: &str = "hostile-v4-unauth";
pub(super) const TENANT_CHUNKS: &str = "hostile-v4-chunks";

/// Incomplete chunked writes a v4 connection may hold (as v3's).
const MAX_INCOMPLETE: i64 = super::MAX_INCOMPLETE as i64;

fn url(ctx: &Ctx, tenant: &str) -> String {
    crate::v4::client::v4_url(&ctx.base, tenant)
}

/// Opens a v4 socket that has said nothing yet.
async fn connect(ctx: &Ctx, who: &'static str, tenant: &str) -> Option<Conn> {
    match Conn::connect(&url(ctx, tenant)).await {
        Ok(conn) => {
            ctx.note(who, |a| a.connects += 1);
            Some(conn)
        }
        Err(_) => {
            ctx.note(who, |a| a.connect_failures += 1);
            ctx.pause(50).await;
            None
        }
    }
}

/// Frames that are not the protocol; each is closed by the server.
pub(super) async fn garbage(ctx: Ctx) {
    const WHO: &str = "v4_garbage";
    let mut over_limit = Vec::new();
    evsync_core::proto::v4::schema_binary::varint::write_uv(
        &mut over_limit,
        DEFAULT_MAX_FRAME_SIZE as u64 + 1,
    );
    over_limit.extend_from_slice(&[0; 64]);
    let mut round = 0u64;
    while !ctx.stopped() {
        round += 1;
        let Some(conn) = connect(&ctx, WHO, TENANT_GARBAGE).await else {
            continue;
        };
        let bytes = match round % 4 {
            0 => over_limit.clone(),
            1 => vec![0],
            2 => {
                // a well-framed body whose first byte is no envelope mode
                let mut body = vec![0xffu8; 48];
                fill_random(&mut body[1..]);
                frame_with_prefix(&body)
            }
            // {"_tag": "Ping", "id": 1} in msgpack, as Effect 3 sends it:
            // read as a frame length of 2 and a body that is no envelope
            _ => b"\x02\x82\xa4_tag\xa4Ping\xa2id\x01".to_vec(),
        };
        ctx.count(WHO, "frames", 1);
        let Conn {
            mut sink, inbound, ..
        } = conn;
        let _ = sink.send(Message::Binary(Bytes::from(bytes))).await;
        let mut stream = inbound.into_stream();
        let end = await_close(&mut stream, Duration::from_secs(5)).await;
        ctx.ended(WHO, end);
        ctx.pause(5).await;
    }
}

/// True when `exit` is a failure naming `Forbidden`.
fn forbidden(exit: &Bytes) -> bool {
    match proto::decode::<AuthenticateExit>(exit) {
        Ok(Exit::Failure(reasons)) => reasons
            .iter()
            .any(|r| matches!(r, Reason::Fail(e) if e.code == ErrorCode::Forbidden)),
        _ => false,
    }
}

/// Requests before authenticating, and a forged signature: every one is
/// answered `Forbidden`; the connection stays open (a real client answers
/// by authenticating) until the attacker closes it.
pub(super) async fn unauthenticated(ctx: Ctx) {
    const WHO: &str = "v4_unauth";
    let identity = Identity::new("hostile-v4-unauth");
    let piece = proto::encode(&ChunkedMessage {
        id: 1,
        index: 0,
        total: 2,
        data: Bytes::from_static(&[0; 64]),
    });
    while !ctx.stopped() {
        let Some(mut conn) = connect(&ctx, WHO, TENANT_UNAUTH).await else {
            continue;
        };
        let Ok(hello) = conn.hello().await else {
            ctx.count(WHO, "hello_failed", 1);
            continue;
        };
        let mut answered = 0;
        let requests = [
            (WRITE_SINGLE, single_payload()),
            (WRITE_CHUNKED, piece.clone()),
            (CHANGES, changes_payload()),
        ];
        for (tag, payload) in requests {
            if let Ok(exit) = conn.call(tag, payload).await {
                answered += u64::from(forbidden(&exit));
            }
        }
        // an Authenticate signed with another key than the one it names
        if let Ok(mut auth) = identity.authenticate(&hello) {
            let mut bad = auth.signature.to_vec();
            bad[0] ^= 0x01;
            auth.signature = Bytes::from(bad);
            if let Ok(exit) = conn
                .call(crate::v4::client::AUTHENTICATE, proto::encode(&auth))
                .await
            {
                answered += u64::from(forbidden(&exit));
            }
        }
        ctx.count(WHO, "requests", 4);
        ctx.count(WHO, "forbidden", answered);
        let Conn {
            mut sink, inbound, ..
        } = conn;
        let _ = sink.send(Message::Close(None)).await;
        let mut stream = inbound.into_stream();
        let end = await_close(&mut stream, Duration::from_secs(5)).await;
        // the attacker closed: the server's echo is not a close of its own
        if !matches!(end, End::Code(_)) {
            ctx.ended(WHO, end);
        } else {
            ctx.note(WHO, |a| {
                *a.ends.entry("closed by the attacker".into()).or_default() += 1
            });
        }
        ctx.pause(5).await;
    }
}

/// The payload of a `WriteSingle` frame built by the bench's client.
fn single_payload() -> Vec<u8> {
    payload_of(write_single_frame(0, "hostile-v4-unauth", STORE_ID, Vec::new()).0)
}

/// The payload of a `Changes` frame built by the bench's client.
fn changes_payload() -> Vec<u8> {
    payload_of(changes_frame(0, "hostile-v4-unauth", STORE_ID, 0))
}

fn payload_of(frame: Bytes) -> Vec<u8> {
    match proto::FromClient::decode(&frame) {
        Ok(proto::FromClient::Request(request)) => request.payload.to_vec(),
        _ => Vec::new(),
    }
}

/// Authenticated chunked writes never finished; each connection is closed
/// by the server.
pub(super) async fn chunk_flood(ctx: Ctx) {
    const WHO: &str = "v4_chunk_flood";
    let identity = Identity::new("hostile-v4-chunks");
    let small = Bytes::from(vec![0x5a; 1024]);
    let mut round = 0u64;
    while !ctx.stopped() {
        round += 1;
        let conn = match Conn::open(&url(&ctx, TENANT_CHUNKS), &identity).await {
            Ok(conn) => {
                ctx.note(WHO, |a| a.connects += 1);
                conn
            }
            Err(_) => {
                ctx.note(WHO, |a| a.connect_failures += 1);
                ctx.pause(50).await;
                continue;
            }
        };
        let pieces: Vec<ChunkedMessage> = if round.is_multiple_of(2) {
            (0..MAX_INCOMPLETE + 4)
                .map(|id| ChunkedMessage {
                    id,
                    index: 0,
                    total: 4,
                    data: small.clone(),
                })
                .collect()
        } else {
            vec![ChunkedMessage {
                id: 1,
                index: 0,
                total: u64::from(u32::MAX),
                data: small.clone(),
            }]
        };
        ctx.count(WHO, "pieces", pieces.len() as u64);
        let Conn {
            mut sink, inbound, ..
        } = conn;
        for (n, piece) in pieces.iter().enumerate() {
            let frame = request_frame(100 + n as i64, WRITE_CHUNKED, proto::encode(piece));
            if sink.feed(Message::Binary(frame)).await.is_err() {
                break;
            }
        }
        let _ = sink.flush().await;
        let mut stream = inbound.into_stream();
        let end = await_close(&mut stream, Duration::from_secs(5)).await;
        ctx.ended(WHO, end);
        ctx.pause(10).await;
    }
}
