//! Incoming frames: size check, decoding, chunk reassembly and dispatch of
//! each request to the part of the engine that serves it.

use super::{ConnId, Engine, Event, RequestSummary, close_code};
use crate::codec::decode_request;
use crate::time::Timestamp;
use crate::wire::{Request, Response};
use bytes::Bytes;

impl Engine {
    /// One complete binary frame arrived on `conn` (a text frame is passed
    /// as its UTF-8 bytes). Bad input closes only that connection.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Bytes, now: Timestamp) {
        if self.shutting_down || !self.conns.contains_key(&conn) {
            return;
        }
        if frame.len() > self.config.max_frame_bytes {
            let reason = format!(
                "frame of {} bytes over the {} byte limit",
                frame.len(),
                self.config.max_frame_bytes
            );
            self.close(conn, close_code::MESSAGE_TOO_BIG, reason);
            return;
        }
        let request = match decode_request(&frame) {
            Ok(request) => request,
            Err(err) => {
                self.close(
                    conn,
                    close_code::PROTOCOL_ERROR,
                    format!("invalid message: {err}"),
                );
                return;
            }
        };
        self.record_request(conn, &request);
        let Request::Chunked(part) = request else {
            self.dispatch(conn, request);
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let pushed = c.reassembler.push(part, now);
        if c.reassembler.incomplete_count() > 0 {
            self.chunking.insert(conn);
        } else {
            self.chunking.remove(&conn);
        }
        match pushed {
            Ok(None) => {}
            Ok(Some(whole)) => match decode_request(&whole) {
                Ok(Request::Chunked(_)) => self.close(
                    conn,
                    close_code::PROTOCOL_ERROR,
                    "invalid message: a chunked message inside a chunked message".into(),
                ),
                Ok(inner) => {
                    self.record_request(conn, &inner);
                    self.dispatch(conn, inner);
                }
                Err(err) => self.close(
                    conn,
                    close_code::PROTOCOL_ERROR,
                    format!("invalid chunked message: {err}"),
                ),
            },
            Err(err) => {
                let code = if err.is_size_limit() {
                    close_code::MESSAGE_TOO_BIG
                } else {
                    close_code::PROTOCOL_ERROR
                };
                self.close(conn, code, err.to_string());
            }
        }
    }

    fn dispatch(&mut self, conn: ConnId, request: Request) {
        match request {
            Request::WriteEntries {
                public_key,
                id,
                iv,
                encrypted_entries,
            } => self.write_entries(conn, public_key, id, iv, encrypted_entries),
            Request::RequestChanges {
                public_key,
                start_sequence,
            } => self.subscribe(conn, public_key, start_sequence),
            Request::StopChanges { public_key } => self.unsubscribe(conn, &public_key),
            Request::Ping { id } => self.send_response(conn, &Response::Pong { id }),
            // Reassembled before dispatch; a nested one was refused above.
            Request::Chunked(_) => {}
        }
    }

    fn record_request(&mut self, conn: ConnId, request: &Request) {
        if !self.debug {
            return;
        }
        let mut summary = RequestSummary {
            tag: request.tag(),
            public_key: None,
            id: None,
            entries: 0,
            start_sequence: None,
            part: None,
        };
        match request {
            Request::WriteEntries {
                public_key,
                id,
                encrypted_entries,
                ..
            } => {
                summary.public_key = Some(public_key.clone());
                summary.id = Some(*id);
                summary.entries = encrypted_entries.len();
            }
            Request::RequestChanges {
                public_key,
                start_sequence,
            } => {
                summary.public_key = Some(public_key.clone());
                summary.start_sequence = Some(*start_sequence);
            }
            Request::StopChanges { public_key } => summary.public_key = Some(public_key.clone()),
            Request::Chunked(part) => {
                summary.id = Some(part.id);
                summary.part = Some((part.index, part.total));
            }
            Request::Ping { id } => summary.id = Some(*id),
        }
        self.events.push_back(Event::Request { conn, summary });
    }
}
