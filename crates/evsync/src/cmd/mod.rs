//! One module per subcommand.

pub mod admin;
pub mod bench;
pub mod client;
pub mod crash;
pub mod hostile;
pub mod offline;
mod progress;
pub mod serve;
pub mod token;
