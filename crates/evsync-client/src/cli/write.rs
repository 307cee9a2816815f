//! `evsync write`: append one entry and print where it went.

use super::args::{Protocol, ProtocolArgs, RemoteArgs, parse_identity};
use super::replica::Replica;
use crate::identity::Identity;
use crate::{msgpack, v4};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    long_about = "Append one entry to IDENTITY's log and wait for the server's Ack. The payload \
        is given as JSON (encoded as MessagePack exactly as an Effect replica encodes the same \
        object, so a Schema'd EventGroup handler decodes it) or as raw hex bytes. Prints \
        {\"sequence\":…,\"entryId\":…} on stdout. With --protocol v4 the entry goes to one store \
        (--store-id) of an Effect 4 log, and JSON is encoded as SchemaBinary exactly as Effect \
        encodes a Schema.Struct of the same strings, numbers, booleans and nested structs \
        (arrays need --payload-hex)."
)]
pub struct WriteArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub protocol: ProtocolArgs,

    /// The identity string (Effect's `Identity.encodeString` form).
    #[arg(
        long,
        env = "EVSYNC_IDENTITY",
        value_name = "STRING",
        value_parser = parse_identity,
        hide_env_values = true
    )]
    pub identity: Identity,

    /// The event tag, e.g. `Note` for `EventGroup.add({ tag: "Note", … })`.
    #[arg(long)]
    pub event: String,

    /// The entry's primaryKey (what the event's `primaryKey(payload)` gives).
    #[arg(long)]
    pub primary_key: String,

    /// The payload as JSON text (`-`: read it from stdin, for payloads too
    /// large for a command line); key order is kept.
    #[arg(
        long,
        value_name = "JSON",
        conflicts_with = "payload_hex",
        required_unless_present = "payload_hex"
    )]
    pub payload_json: Option<String>,

    /// The payload as hex bytes, sent as they are (v4: a SchemaBinary
    /// frame of the event's payload schema).
    #[arg(long, value_name = "HEX")]
    pub payload_hex: Option<String>,

    /// Give up when the Ack has not come after this long (connecting
    /// included), e.g. 30s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::parse_duration)]
    pub timeout: std::time::Duration,
}

pub(crate) async fn run(args: WriteArgs) -> ExitCode {
    let payload = match (&args.payload_json, &args.payload_hex) {
        (Some(json), _) => match read_json_arg(json).and_then(|text| match args.protocol.protocol {
            Protocol::V3 => msgpack::encode_json_text(&text).map_err(|e| e.to_string()),
            Protocol::V4 => v4::payload::encode_json_text(&text),
        }) {
            Ok(bytes) => bytes,
            Err(e) => return super::fail(format!("--payload-json: {e}"), super::EXIT_USAGE),
        },
        (None, Some(hex)) => match from_hex(hex) {
            Some(bytes) => bytes,
            None => {
                return super::fail(
                    "--payload-hex: not an even number of hex digits",
                    super::EXIT_USAGE,
                );
            }
        },
        (None, None) => {
            return super::fail("give --payload-json or --payload-hex", super::EXIT_USAGE);
        }
    };
    let config = match args.remote.config(args.identity) {
        Ok(config) => config,
        Err(e) => return super::fail(e, super::EXIT_USAGE),
    };
    let url = config.url.clone();
    let deadline = tokio::time::Instant::now() + args.timeout;
    let config = config.with_connect_timeout(args.timeout);
    let client = match Replica::connect(config, &args.protocol).await {
        Ok(client) => client,
        Err(e) => return super::fail(format!("cannot connect to {url}: {e}"), super::EXIT_FAILURE),
    };
    let write = client.write(args.event, args.primary_key, payload);
    let result = match tokio::time::timeout_at(deadline, write).await {
        Ok(result) => result,
        Err(_) => Err(crate::Error::Timeout {
            what: "the Ack",
            after: args.timeout,
        }),
    };
    client.close().await;
    match result {
        Ok(receipt) => {
            println!(
                "{}",
                serde_json::json!({
                    "sequence": receipt.sequence,
                    "entryId": receipt.entry_id.to_uuid_string(),
                    "remoteId": receipt.remote_id.to_uuid_string(),
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(format!("write failed: {e}"), super::EXIT_FAILURE),
    }
}

/// The JSON text of `--payload-json`: the argument, or stdin for `-`.
fn read_json_arg(arg: &str) -> Result<String, String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(text)
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_parsing() {
        assert_eq!(super::from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(super::from_hex("0"), None);
        assert_eq!(super::from_hex("zz"), None);
        assert_eq!(super::from_hex(""), Some(vec![]));
    }
}
