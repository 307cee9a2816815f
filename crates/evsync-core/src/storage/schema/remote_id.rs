//! The one rule for a tenant's remoteId, shared by every backend.
//!
//! A tenant's remoteId is created on first use from 16 random bytes
//! (a UUID v4, [`RemoteId::from_random_bytes`]) and stored with an
//! insert-or-ignore, then read back: when two connections (the native
//! server's reader and writer, two Durable Object instances racing on D1)
//! create one at once, the first stored wins and both answer with it. A
//! replica keys its sync state by remoteId, so it must never change while
//! the tenant's data exists. Where the random bytes come from (the OS,
//! `crypto.getRandomValues`) is the backend's part; the core reads no
//! randomness source of its own.

use crate::storage::StorageError;
use crate::wire::RemoteId;

/// A new remoteId from `random` (16 bytes from a CSPRNG), or the reason
/// there were none.
pub fn create(random: Result<[u8; 16], String>) -> Result<RemoteId, StorageError> {
    random
        .map(RemoteId::from_random_bytes)
        .map_err(|e| StorageError::new(format!("no randomness for a remoteId: {e}")))
}

/// A stored remoteId, which must be 16 bytes.
pub fn decode(stored: &[u8]) -> Result<RemoteId, StorageError> {
    let bytes: [u8; 16] = stored
        .try_into()
        .map_err(|_| StorageError::new("stored remoteId is not 16 bytes"))?;
    Ok(RemoteId(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_ids_are_uuid_v4_and_stored_ones_are_checked() {
        let id = create(Ok([0xff; 16])).unwrap();
        assert_eq!(id.0[6] >> 4, 4, "version 4");
        assert_eq!(decode(&id.0).unwrap(), id);
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(create(Err("none".into())).is_err());
    }
}
