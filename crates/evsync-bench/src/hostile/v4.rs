//! The hostile suite's Effect v4 attackers (`/v4/event-log/<tenant>`),
//! beside the v3 ones in the parent module and run with them:
//!
//! - `v4_garbage`: frames that are not the protocol: a declared length of
//!   16 MiB + 1, over the server's frame limit (refused at the prefix,
//!   before any byte is buffered: 1009), a length of 0 (1002), a
//!   well-framed body that is no RPC envelope, a frame holding the start of
//!   a v3 (msgpack) `Ping` (1002);
//! - `v4_unauth`: requests before `Authenticate` (`WriteSingle`,
//!   `WriteChunked`, `Changes`, each answered `Forbidden` so that a real
//!   client re-authenticates) and an `Authenticate` whose signature is
//!   wrong (`Forbidden`), then the attacker closes;
//! - `v4_chunk_flood`: authenticated `WriteChunked` pieces of writes never
//!   finished, more than the 8 incomplete ones allowed, or one piece
//!   declaring 4,294,967,295 pieces.

use super::{Ctx, await_close};
use crate::common::{fill_random, send_frames};
use crate::v4::client::{
    AUTHENTICATE, CHANGES, Conn, Identity, STORE_ID, WRITE_CHUNKED, WRITE_SINGLE, changes_payload,
    request_frame, v4_url, write_single_payload,
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
    v4_url(&ctx.base, tenant)
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
        let attempt = Conn::connect(&url(&ctx, TENANT_GARBAGE)).await;
        let Some(conn) = ctx.counted(WHO, attempt).await else {
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
            // a frame of 2 bytes whose body starts Effect 3's msgpack Ping
            // ({"_tag": "Ping", "id": 1}), the rest of which follows: no
            // envelope. (The bare msgpack bytes would read as a length
            // prefix of 1.5 MB, and the server would wait for the rest.)
            _ => b"\x02\x82\xa4_tag\xa4Ping\xa2id\x01".to_vec(),
        };
        ctx.count(WHO, "frames", 1);
        let (mut sink, mut stream) = conn.into_split();
        let _ = sink.send(Message::Binary(Bytes::from(bytes))).await;
        let end = await_close(&mut stream, Duration::from_secs(5)).await;
        ctx.ended(WHO, end);
        ctx.pause(5).await;
    }
}

/// True when `exit` is a failure naming `Forbidden`. Read as an
/// `Authenticate` exit whatever the RPC: a failure decodes the same for
/// every RPC, and a success of another shape reads as no `Forbidden`.
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
    const KEY: &str = "hostile-v4-unauth";
    let identity = Identity::new(KEY);
    let piece = proto::encode(&ChunkedMessage {
        id: 1,
        index: 0,
        total: 2,
        data: Bytes::from_static(&[0; 64]),
    });
    while !ctx.stopped() {
        let attempt = Conn::connect(&url(&ctx, TENANT_UNAUTH)).await;
        let Some(mut conn) = ctx.counted(WHO, attempt).await else {
            continue;
        };
        let Ok(hello) = conn.hello().await else {
            ctx.count(WHO, "hello_failed", 1);
            continue;
        };
        let mut answered = 0;
        let requests = [
            (
                WRITE_SINGLE,
                write_single_payload(KEY, STORE_ID, Vec::new()).0,
            ),
            (WRITE_CHUNKED, piece.clone()),
            (CHANGES, changes_payload(KEY, STORE_ID, 0)),
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
            if let Ok(exit) = conn.call(AUTHENTICATE, proto::encode(&auth)).await {
                answered += u64::from(forbidden(&exit));
            }
        }
        ctx.count(WHO, "requests", 4);
        ctx.count(WHO, "forbidden", answered);
        // the attacker closes (and waits for the server's echo)
        let (mut sink, mut stream) = conn.into_split();
        let _ = sink.send(Message::Close(None)).await;
        let _ = await_close(&mut stream, Duration::from_secs(5)).await;
        ctx.pause(5).await;
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
        let attempt = Conn::open(&url(&ctx, TENANT_CHUNKS), &identity).await;
        let Some(conn) = ctx.counted(WHO, attempt).await else {
            continue;
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
        let frames = (100..)
            .zip(&pieces)
            .map(|(id, piece)| request_frame(id, WRITE_CHUNKED, proto::encode(piece)))
            .collect();
        let (mut sink, mut stream) = conn.into_split();
        let _ = send_frames(&mut sink, frames).await;
        let end = await_close(&mut stream, Duration::from_secs(5)).await;
        ctx.ended(WHO, end);
        ctx.pause(10).await;
    }
}
