//! One replica for the commands, speaking v3 or v4.

use super::args::{Protocol, ProtocolArgs};
use crate::client::{Client, Subscription, WriteReceipt};
use crate::config::Config;
use crate::connection::ConnectTimings;
use crate::error::Error;
use crate::v4;

pub(crate) enum Replica {
    V3(Client),
    V4(v4::Client),
}

impl Replica {
    pub(crate) async fn connect(config: Config, protocol: &ProtocolArgs) -> Result<Replica, Error> {
        Ok(match protocol.protocol {
            Protocol::V3 => Replica::V3(Client::connect(config).await?),
            Protocol::V4 => {
                Replica::V4(v4::Client::connect(config, protocol.store_id.clone()).await?)
            }
        })
    }

    pub(crate) async fn write(
        &self,
        event: String,
        primary_key: String,
        payload: Vec<u8>,
    ) -> Result<WriteReceipt, Error> {
        match self {
            Replica::V3(c) => c.write(event, primary_key, payload).await,
            Replica::V4(c) => c.write(event, primary_key, payload).await,
        }
    }

    pub(crate) fn subscribe(&self) -> Result<Subscription, Error> {
        match self {
            Replica::V3(c) => c.subscribe(),
            Replica::V4(c) => c.subscribe(),
        }
    }

    pub(crate) fn connect_timings(&self) -> ConnectTimings {
        match self {
            Replica::V3(c) => c.connect_timings(),
            Replica::V4(c) => c.connect_timings(),
        }
    }

    /// The remoteId of the current connection, as a UUID.
    pub(crate) fn remote_id(&self) -> String {
        let status = match self {
            Replica::V3(c) => c.status(),
            Replica::V4(c) => c.status(),
        };
        let id = status.borrow().remote_id;
        id.map(|r| r.to_uuid_string()).unwrap_or_default()
    }

    pub(crate) async fn close(&self) {
        match self {
            Replica::V3(c) => c.close().await,
            Replica::V4(c) => c.close().await,
        }
    }
}
