//! Converting between Rust values and the values DO SQL binds and returns.

use evsync_core::storage::StorageError;
use worker::SqlStorageValue;

/// An integer column (sequence, schema version).
pub fn int(value: &SqlStorageValue) -> Result<i64, StorageError> {
    match value {
        SqlStorageValue::Integer(i) => Ok(*i),
        SqlStorageValue::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(StorageError::new(format!(
            "expected an integer column, got {other:?}"
        ))),
    }
}

/// A blob column, as its bytes.
pub fn blob(value: &SqlStorageValue) -> Result<Vec<u8>, StorageError> {
    match value {
        SqlStorageValue::Blob(bytes) => Ok(bytes.clone()),
        SqlStorageValue::Null => Err(StorageError::new("expected a blob column, got NULL")),
        other => Err(StorageError::new(format!(
            "expected a blob column, got {other:?}"
        ))),
    }
}

/// A blob column, taking its bytes without a copy.
pub fn into_blob(value: SqlStorageValue) -> Result<Vec<u8>, StorageError> {
    match value {
        SqlStorageValue::Blob(bytes) => Ok(bytes),
        other => blob(&other),
    }
}

/// A text column (a publicKey), taking its string without a copy.
pub fn into_text(value: SqlStorageValue) -> Result<String, StorageError> {
    match value {
        SqlStorageValue::String(text) => Ok(text),
        other => Err(StorageError::new(format!(
            "expected a text column, got {other:?}"
        ))),
    }
}

/// A sequence or count as a parameter. Values past 2^53 cannot occur as
/// sequences; limits are clamped there (JS numbers are exact below it).
pub fn param_int(value: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(value.min(MAX_SAFE_INTEGER) as i64)
}

/// Bytes as a blob parameter.
pub fn param_blob(bytes: &[u8]) -> SqlStorageValue {
    SqlStorageValue::Blob(bytes.to_vec())
}

/// `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
