//! The tenant export format: one versioned, streaming file that carries a
//! tenant whole from one home to another (native SQLite, a Durable Object,
//! D1, a backup) so that its replicas do not notice the move.
//!
//! Why the format carries what it carries: an Effect replica keeps, per
//! remoteId, the last sequence it saw. A tenant that comes back under
//! another remoteId makes every replica read it again from the start
//! (duplicates); one whose sequences shift makes replicas skip or replay
//! entries. So the header carries the remoteId and every entry its
//! sequence, and an import refuses anything that would change either.
//!
//! Layout (JSON Lines, UTF-8, one object per line, `\n` after each; keys
//! in any order, written sorted):
//!
//! ```text
//! {"format":"evsync-export","remoteId":"<uuid>","tenant":"acme","tokensNotBefore":null,"version":2}
//! {"data":"<b64>","entryId":"<b64>","iv":"<b64>","log":"<publicKey>","seq":1}
//! … every entry of every log: a log's entries together, sequences 1, 2, 3 …
//! {"store":{"head":7,"publicKey":"<publicKey>","storeId":"<storeId>"}}
//! {"batch":{"data":"<b64>","entryIds":["<b64>",…],"iv":"<b64>","seq":1}}
//! … every Effect v4 store: its header, then its batches from sequence 1
//!   to its head without a gap; stores by (publicKey, storeId)
//! {"binding":{"publicKey":"<publicKey>","signingKey":"<b64>"}}
//! … every v4 session-auth binding, by publicKey
//! {"end":{"batches":9,"bindings":1,"entries":345,"logs":2,"sha256":"<hex>","stores":2}}
//! ```
//!
//! Version 1 (evsync before Effect v4 support) is the same without the v4
//! lines and their three counts; it is still read. A v4 store carries its
//! sequences for the reason v3 logs do: an Effect 4 replica keeps its
//! cursor per remoteId and store, and the bindings keep the first client
//! of each publicKey its owner (see [`v4_record`]).
//!
//! Bytes are standard base64 with padding. The trailer's `sha256` is the
//! SHA-256 of every byte before the trailer line; a file without the
//! trailer (truncated), with another checksum (damaged), with bytes after
//! it, with a sequence that does not follow its predecessor, or with
//! records out of the order above ([`order`]) is refused
//! by [`ExportReader`] before anything is imported.
//!
//! JSON Lines rather than a binary layout: an operator can look into an
//! export with `head` and `jq`, and the cost (base64, about a third more
//! bytes) is paid only when moving a tenant, not on the sync path.

mod fields;
mod order;
mod page;
mod reader;
mod record;
mod transfer;
mod v4_record;
mod v4_transfer;
mod writer;

pub use page::TRANSFER_PAGE;
pub use reader::{ExportError, ExportReader, ReadItem};
pub use record::{
    ExportHeader, ExportSummary, FORMAT_NAME, FORMAT_VERSION, OLDEST_FORMAT_VERSION,
    parse_remote_id,
};
pub use transfer::{Exporter, Importer, export_store};
pub use writer::ExportWriter;
