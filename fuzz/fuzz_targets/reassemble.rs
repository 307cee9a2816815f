//! Arbitrary sequences of chunk parts (and clock advances) against a
//! `Reassembler` with small fuzzer-chosen limits. Checks that its memory
//! bounds always hold, that it refuses exactly the parts the limits forbid,
//! and, against a simple model, that every reassembled message is the
//! concatenation of the first copy of each of its parts.
#![no_main]

use bytes::Bytes;
use evsync_core::chunk::{ChunkError, ChunkLimits, Reassembler};
use evsync_core::time::Timestamp;
use evsync_core::wire::ChunkedMessage;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

struct ModelPartial {
    total: u32,
    parts: Vec<Option<Bytes>>,
    started: u64,
}

impl ModelPartial {
    fn bytes(&self) -> usize {
        self.parts.iter().flatten().map(Bytes::len).sum()
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let limits = ChunkLimits {
        max_parts: u.int_in_range(1..=6)?,
        max_message_bytes: u.int_in_range(0..=64)?,
        max_incomplete_messages: u.int_in_range(0..=4)?,
        max_incomplete_bytes: u.int_in_range(0..=96)?,
        max_incomplete_age_ms: u.int_in_range(1..=1000)?,
    };
    let mut r = Reassembler::new(limits.clone());
    let mut model: HashMap<i64, ModelPartial> = HashMap::new();
    // The model tracks the reassembler until its first error: after an
    // error the engine closes the connection, so only bounds matter then.
    let mut model_valid = true;
    let mut now = 0u64;

    while !u.is_empty() {
        if u.ratio(1, 8)? {
            now += u.int_in_range(0..=1500)?;
            let expiry = r.check_expiry(Timestamp(now));
            if let Err(ChunkError::Expired { age_ms, .. }) = &expiry {
                assert!(*age_ms >= limits.max_incomplete_age_ms);
            } else {
                assert_eq!(expiry, Ok(()));
            }
            let deadline_passed = r.next_deadline().is_some_and(|d| d.0 <= now);
            assert_eq!(
                expiry.is_err(),
                deadline_passed,
                "check_expiry vs next_deadline"
            );
            if model_valid {
                let model_expired = model
                    .values()
                    .any(|p| now - p.started >= limits.max_incomplete_age_ms);
                assert_eq!(expiry.is_err(), model_expired);
            }
            continue;
        }

        let id = u.int_in_range(-1..=2)? as i64;
        let total: u32 = u.int_in_range(0..=7)?;
        let index: u32 = u.int_in_range(0..=total)?;
        let len = u.int_in_range(0..=40)?;
        let data = Bytes::copy_from_slice(u.bytes(len)?);
        let part = ChunkedMessage {
            id,
            index,
            total,
            data: data.clone(),
        };

        // What the limits say about this part, judged from the model.
        let expect_ok = model_valid.then(|| {
            let held: usize = model.values().map(ModelPartial::bytes).sum();
            let basic = total >= 1
                && index < total
                && total <= limits.max_parts
                && len <= limits.max_message_bytes;
            basic
                && match model.get(&id) {
                    None if total == 1 => true,
                    None => {
                        model.len() < limits.max_incomplete_messages
                            && held + len <= limits.max_incomplete_bytes
                    }
                    Some(p) if p.total != total => false,
                    Some(p) if p.parts[index as usize].is_some() => true,
                    Some(p) => {
                        p.bytes() + len <= limits.max_message_bytes
                            && held + len <= limits.max_incomplete_bytes
                    }
                }
        });

        let result = r.push(part, Timestamp(now));

        match &result {
            Err(ChunkError::ZeroTotal { .. }) => assert_eq!(total, 0),
            Err(ChunkError::IndexOutOfRange { .. }) => assert!(index >= total),
            Err(ChunkError::TooManyParts { .. }) => assert!(total > limits.max_parts),
            _ => {}
        }
        if total == 0 || index >= total || total > limits.max_parts {
            assert!(
                result.is_err(),
                "accepted an invalid part {id}/{index}/{total}"
            );
        }
        if let Some(expect_ok) = expect_ok {
            assert_eq!(
                result.is_ok(),
                expect_ok,
                "part id={id} index={index} total={total} len={len}: {result:?}"
            );
        }

        match result {
            Ok(Some(whole)) => {
                assert!(whole.len() <= limits.max_message_bytes);
                if model_valid {
                    match model.get_mut(&id) {
                        None => {
                            assert_eq!(total, 1);
                            assert_eq!(whole, data);
                        }
                        Some(p) => {
                            assert!(
                                p.parts[index as usize].is_none(),
                                "completed on a duplicate"
                            );
                            p.parts[index as usize] = Some(data);
                            assert!(p.parts.iter().all(Option::is_some), "completed early");
                            let joined: Vec<u8> = p
                                .parts
                                .iter()
                                .flatten()
                                .flat_map(|b| b.iter().copied())
                                .collect();
                            assert_eq!(&whole[..], &joined[..]);
                            model.remove(&id);
                        }
                    }
                }
            }
            Ok(None) => {
                if model_valid {
                    let p = model.entry(id).or_insert_with(|| ModelPartial {
                        total,
                        parts: vec![None; total as usize],
                        started: now,
                    });
                    assert_eq!(p.total, total);
                    let slot = &mut p.parts[index as usize];
                    if slot.is_none() {
                        *slot = Some(data);
                        assert!(
                            p.parts.iter().any(Option::is_none),
                            "complete but not returned"
                        );
                    }
                }
            }
            Err(_) => model_valid = false,
        }

        assert!(r.held_bytes() <= limits.max_incomplete_bytes);
        assert!(r.incomplete_count() <= limits.max_incomplete_messages);
        if model_valid {
            let held: usize = model.values().map(ModelPartial::bytes).sum();
            assert_eq!(r.held_bytes(), held);
            assert_eq!(r.incomplete_count(), model.len());
        }
    }
    Ok(())
}
