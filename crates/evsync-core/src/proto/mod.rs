//! Protocol layers over the log service, side by side: each owns its codec,
//! framing and session rules and speaks to the protocol-neutral
//! [`crate::log`] service in entries, subscriptions and commits. What is
//! common to every protocol lives here: what an engine asks its adapter to
//! do ([`action::Action`]), close codes and reasons, engine statistics, the
//! events worth logging and the request log's line ([`event`]), and the
//! idle-socket clock both session layers keep ([`idle`]).

pub mod action;
pub mod close;
pub mod event;
pub(crate) mod idle;
pub mod stats;
pub mod tenant;
pub mod v3;
pub mod v4;
