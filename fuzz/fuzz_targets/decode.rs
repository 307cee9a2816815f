//! Arbitrary bytes as a request frame and as a response frame: decoding must
//! never panic, and whatever decodes must re-encode to a frame that decodes
//! to the same value, with the exact length the size functions predict.
#![no_main]

use bytes::Bytes;
use evsync_core::codec::{
    changes_overhead, decode_request, decode_response, encode_request, encode_response,
    remote_entry_encoded_len, request_encoded_len, response_encoded_len,
};
use evsync_core::wire::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);

    if let Ok(request) = decode_request(&frame) {
        let encoded = encode_request(&request);
        assert_eq!(encoded.len(), request_encoded_len(&request));
        let again = decode_request(&Bytes::from(encoded.clone()))
            .unwrap_or_else(|e| panic!("re-encoded {request:?} does not decode: {e}"));
        assert_eq!(again, request);
        // Our encoding is canonical: a fixpoint.
        assert_eq!(encode_request(&again), encoded);
    }

    if let Ok(response) = decode_response(&frame) {
        let encoded = encode_response(&response);
        assert_eq!(encoded.len(), response_encoded_len(&response));
        if let Response::Changes {
            public_key,
            entries,
        } = &response
        {
            let predicted = changes_overhead(public_key, entries.len())
                + entries.iter().map(remote_entry_encoded_len).sum::<usize>();
            assert_eq!(predicted, encoded.len());
        }
        let again = decode_response(&Bytes::from(encoded.clone()))
            .unwrap_or_else(|e| panic!("re-encoded {response:?} does not decode: {e}"));
        assert_eq!(again, response);
        assert_eq!(encode_response(&again), encoded);
    }
});
