//! 32-bit FNV-1a: SchemaBinary's field ids and variant tags.
//!
//! A struct field's id is the FNV-1a hash of its name's UTF-8 (no eventlog
//! schema overrides it with a `fieldId` annotation), and a tagged variant's
//! tag hashes its sentinel set (`_tag: "Single"`). Both are `const fn`, so
//! every id the codec uses is computed at compile time from the field name
//! itself and a typo cannot hide behind a magic number; the tests pin them
//! to the ids Effect 4.1.0 writes.

const OFFSET_BASIS: u32 = 0x811c_9dc5;
const PRIME: u32 = 0x0100_0193;

const fn extend(mut hash: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

/// FNV-1a (32-bit) of `bytes`.
pub const fn fnv1a32(bytes: &[u8]) -> u32 {
    extend(OFFSET_BASIS, bytes)
}

/// The field id of a struct field called `name`.
pub const fn field_id(name: &str) -> u32 {
    fnv1a32(name.as_bytes())
}

/// The variant tag of a struct whose one sentinel is the string literal
/// `key: value`. Effect hashes, for each sentinel sorted by key: `01` (a
/// string key), u32 LE key length, the key, the literal's kind (`01` for a
/// string), u32 LE value length, the value.
pub const fn string_sentinel_tag(key: &str, value: &str) -> u32 {
    let mut h = extend(OFFSET_BASIS, &[1]);
    h = extend(h, &(key.len() as u32).to_le_bytes());
    h = extend(h, key.as_bytes());
    h = extend(h, &[1]);
    h = extend(h, &(value.len() as u32).to_le_bytes());
    extend(h, value.as_bytes())
}

/// The variant tag of a `TaggedStruct`/`TaggedClass`/`TaggedError` whose
/// `_tag` is `tag`.
pub const fn variant_tag(tag: &str) -> u32 {
    string_sentinel_tag("_tag", tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ids_match_the_protocol_table() {
        for (name, id) in [
            ("challenge", 15_175_742),
            ("compaction", 2_313_124_296),
            ("remoteId", 2_934_993_470),
            ("firstSequence", 3_051_664_332),
            ("algorithm", 474_311_018),
            ("signature", 1_605_069_165),
            ("publicKey", 4_094_297_855),
            ("signingPublicKey", 4_147_058_588),
            ("data", 3_631_407_781),
            ("id", 926_444_256),
            ("_tag", 1_921_625_614),
            ("part", 2_088_252_948),
            ("storeId", 1_285_785_683),
            ("startSequence", 1_994_104_710),
            ("sequence", 1_011_085_160),
            ("entryId", 2_800_064_638),
            ("batches", 3_328_449_387),
            ("iv", 1_228_441_398),
            ("encryptedBatch", 1_614_716_869),
            ("entryIds", 3_362_675_831),
            ("entries", 1_868_071_667),
            ("payload", 856_651_685),
            ("primaryKey", 3_325_964_816),
            ("event", 4_264_611_999),
            ("entry", 3_401_832_339),
            ("remoteSequence", 3_561_044_258),
            ("message", 619_841_764),
            ("requestTag", 2_773_596_458),
            ("code", 4_180_765_940),
        ] {
            assert_eq!(field_id(name), id, "{name}");
        }
    }

    #[test]
    fn variant_tags_match_the_protocol_table() {
        for (tag, want) in [
            ("Single", 0xc640_300c),
            ("Chunked", 0x85c3_bb47),
            ("EventLogProtocolError", 0x46bb_7369),
            ("Started", 0xa7cd_2362),
            ("Busy", 0xc5c3_6797),
            ("NotWanted", 0x1e90_2a57),
            ("Snapshot", 0xd95b_fb32),
            ("NoOp", 0xc970_a63e),
        ] {
            assert_eq!(variant_tag(tag), want, "{tag}");
        }
    }

    #[test]
    fn empty_input_is_the_offset_basis() {
        assert_eq!(fnv1a32(b""), OFFSET_BASIS);
        // The reference vector of FNV-1a 32: "a" → 0xe40c292c.
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }
}
