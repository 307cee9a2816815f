//! Session auth against real Effect v4 traffic: in `tap-enc` (effect
//! 4.1.0's client and server, recorded), each connection's `Hello` handed
//! out a challenge and the client answered with `Authenticate`. The
//! recorded signatures must verify with `proto::v4::auth`, and every
//! change to what was signed (or to the key it is checked with) must not.

use bytes::Bytes;
use evsync_core::proto::v4::auth::{AuthRefused, verify};
use evsync_core::proto::v4::*;
use evsync_core::wire::RemoteId;

/// One connection's Hello answer and Authenticate request.
struct Handshake {
    hello: HelloResponse,
    auth: Authenticate,
}

fn frame(hex: &str) -> Bytes {
    Bytes::from(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

/// The handshakes of every connection of the recorded encrypted session.
fn handshakes() -> Vec<Handshake> {
    let text = include_str!("fixtures/v4-captures/tap-enc.jsonl");
    let mut hellos = std::collections::BTreeMap::new();
    let mut auths = std::collections::BTreeMap::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let (Some(conn), Some(hex)) = (record["conn"].as_u64(), record["hex"].as_str()) else {
            continue;
        };
        match record["dir"].as_str() {
            Some("s2c") => {
                if let Ok(FromServer::Exit { exit, .. }) = FromServer::decode(&frame(hex))
                    && let Ok(Exit::Success(hello)) = decode::<HelloExit>(&exit)
                {
                    hellos.entry(conn).or_insert(hello);
                }
            }
            Some("c2s") => {
                if let Ok(FromClient::Request(request)) = FromClient::decode(&frame(hex))
                    && request.tag == "EventLog.Authenticate"
                {
                    auths
                        .entry(conn)
                        .or_insert(decode::<Authenticate>(&request.payload).unwrap());
                }
            }
            _ => {}
        }
    }
    let out: Vec<Handshake> = auths
        .into_iter()
        .map(|(conn, auth)| Handshake {
            hello: hellos.remove(&conn).expect("a Hello before Authenticate"),
            auth,
        })
        .collect();
    assert!(out.len() >= 2, "the recording has several connections");
    out
}

fn remote_id(hello: &HelloResponse) -> RemoteId {
    RemoteId(hello.remote_id[..].try_into().unwrap())
}

fn check(h: &Handshake, challenge: &[u8], bound: &[u8]) -> Result<(), AuthRefused> {
    verify(
        &remote_id(&h.hello),
        challenge,
        &h.auth.public_key,
        &h.auth.signing_public_key,
        &h.auth.signature,
        bound,
    )
}

#[test]
fn effects_recorded_signatures_verify() {
    for h in handshakes() {
        let key = h.auth.signing_public_key.clone();
        assert_eq!(check(&h, &h.hello.challenge, &key), Ok(()));
    }
}

#[test]
fn anything_else_signed_or_another_key_is_refused() {
    let all = handshakes();
    let (a, b) = (&all[0], &all[1]);
    let key = a.auth.signing_public_key.clone();
    // Another connection's challenge (a replayed Authenticate).
    assert_ne!(a.hello.challenge, b.hello.challenge);
    assert_eq!(
        check(a, &b.hello.challenge, &key),
        Err(AuthRefused::SignatureInvalid)
    );
    // Another remoteId (a signature made for another server).
    let mut other = remote_id(&a.hello);
    other.0[0] ^= 1;
    let signed_elsewhere = verify(
        &other,
        &a.hello.challenge,
        &a.auth.public_key,
        &key,
        &a.auth.signature,
        &key,
    );
    assert_eq!(signed_elsewhere, Err(AuthRefused::SignatureInvalid));
    // Another publicKey claimed with the same signature.
    let claimed = verify(
        &remote_id(&a.hello),
        &a.hello.challenge,
        "someone-else",
        &key,
        &a.auth.signature,
        &key,
    );
    assert_eq!(claimed, Err(AuthRefused::SignatureInvalid));
    // A bound key other than the one that signed (the publicKey belongs
    // to someone else: first use won).
    let mut stranger = key.to_vec();
    stranger[5] ^= 0x40;
    assert_eq!(
        check(a, &a.hello.challenge, &stranger),
        Err(AuthRefused::SignatureInvalid)
    );
    // A flipped signature bit.
    let mut tampered = a.auth.clone();
    let mut signature = tampered.signature.to_vec();
    signature[10] ^= 1;
    tampered.signature = Bytes::from(signature);
    let h = Handshake {
        hello: a.hello.clone(),
        auth: tampered,
    };
    assert_eq!(
        check(&h, &a.hello.challenge, &key),
        Err(AuthRefused::SignatureInvalid)
    );
}
