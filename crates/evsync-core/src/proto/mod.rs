//! Protocol layers over the log service, side by side: each owns its codec,
//! framing and session rules and speaks to the protocol-neutral
//! [`crate::log`] service in entries, subscriptions and commits. What is
//! common to every protocol (close codes and reasons, engine statistics)
//! lives here.

pub mod close;
pub mod stats;
pub mod v3;
pub mod v4;
