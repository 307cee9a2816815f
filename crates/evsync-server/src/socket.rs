//! What a sync connection is once upgraded. A module of its own so that
//! the handshake (`upgrade`), which makes one, and the socket pump
//! (`connection`) and the tenant's writer to it (`outlet`), which use one,
//! share the type without depending on each other.

use crate::on_demand_read::OnDemandRead;
use tokio_tungstenite::WebSocketStream;

/// An upgraded sync socket: a WebSocket over a TCP stream whose read
/// buffer exists only while bytes are waiting ([`OnDemandRead`]).
pub(crate) type Socket = WebSocketStream<OnDemandRead>;
