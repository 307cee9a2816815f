//! The handshake: `EventLog.Hello`'s answer and `EventLog.Authenticate`'s
//! payload (EventLogMessage.ts `HelloResponse`, `Authenticate`).

use bytes::Bytes;

use super::fields;
use crate::proto::v4::error::Result;
use crate::proto::v4::schema_binary::fnv::field_id;
use crate::proto::v4::schema_binary::reader::{KIND_BOOL, KIND_NUMBER, StructReader, required};
use crate::proto::v4::schema_binary::{Reader, Value, Writer};

const CHALLENGE: u32 = field_id("challenge");
const COMPACTION: u32 = field_id("compaction");
const REMOTE_ID: u32 = field_id("remoteId");
const FIRST_SEQUENCE: u32 = field_id("firstSequence");

/// The success of `EventLog.Hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloResponse {
    /// 32 fresh random bytes the client signs in `Authenticate`.
    pub challenge: Bytes,
    /// `compaction: true`: the server serves the compaction RPCs.
    pub compaction: bool,
    /// The server's stable id (16 bytes); clients keep cursors per remote id.
    pub remote_id: Bytes,
    /// The lowest sequence the server assigns (absent = 0).
    pub first_sequence: Option<u64>,
}

impl Value for HelloResponse {
    const NAME: &'static str = "HelloResponse";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let (mut challenge, mut compaction, mut remote_id, mut first_sequence) =
            (None, false, None, None);
        let mut s = StructReader::new(r, &[CHALLENGE, COMPACTION, REMOTE_ID, FIRST_SEQUENCE]);
        while let Some((i, v)) = s.next_field()? {
            match i {
                0 => challenge = fields::bytes(v),
                1 => compaction = fields::optional_true("compaction", v)?,
                2 => remote_id = fields::bytes(v),
                _ => first_sequence = fields::optional_natural("firstSequence", v)?,
            }
        }
        Ok(HelloResponse {
            challenge: required(challenge, "challenge")?,
            compaction,
            remote_id: required(remote_id, "remoteId")?,
            first_sequence,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.field_bytes(CHALLENGE, &self.challenge);
        if self.compaction {
            w.field(COMPACTION, |w| {
                w.byte(KIND_BOOL);
                w.byte(1);
            });
        }
        w.field_bytes(REMOTE_ID, &self.remote_id);
        if let Some(first) = self.first_sequence {
            w.field(FIRST_SEQUENCE, |w| {
                w.byte(KIND_NUMBER);
                w.nv(first as i64);
            });
        }
    }
}

const ALGORITHM: u32 = field_id("algorithm");
const SIGNATURE: u32 = field_id("signature");
const PUBLIC_KEY: u32 = field_id("publicKey");
const SIGNING_PUBLIC_KEY: u32 = field_id("signingPublicKey");

/// The only signature algorithm (`Schema.Literal("Ed25519")`); any other
/// fails payload decoding.
pub const ED25519: &str = "Ed25519";

/// The payload of `EventLog.Authenticate`. `algorithm` is the literal
/// `"Ed25519"`, checked when decoding and written when encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticate {
    /// The signature over the canonical auth payload (64 bytes).
    pub signature: Bytes,
    /// The identity's public key (a UUID string, not a key).
    pub public_key: String,
    /// The Ed25519 key the signature verifies with (32 bytes).
    pub signing_public_key: Bytes,
}

impl Value for Authenticate {
    const NAME: &'static str = "Authenticate";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let (mut algorithm, mut signature, mut public_key, mut signing_public_key) =
            (None, None, None, None);
        let mut s = StructReader::new(r, &[ALGORITHM, SIGNATURE, PUBLIC_KEY, SIGNING_PUBLIC_KEY]);
        while let Some((i, v)) = s.next_field()? {
            match i {
                0 => algorithm = fields::literal("algorithm", ED25519, v)?,
                1 => signature = fields::bytes(v),
                2 => public_key = fields::string("publicKey", v)?,
                _ => signing_public_key = fields::bytes(v),
            }
        }
        required(algorithm, "algorithm")?;
        Ok(Authenticate {
            signature: required(signature, "signature")?,
            public_key: required(public_key, "publicKey")?,
            signing_public_key: required(signing_public_key, "signingPublicKey")?,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.field_str(ALGORITHM, ED25519);
        w.field_bytes(SIGNATURE, &self.signature);
        w.field_str(PUBLIC_KEY, &self.public_key);
        w.field_bytes(SIGNING_PUBLIC_KEY, &self.signing_public_key);
    }
}
