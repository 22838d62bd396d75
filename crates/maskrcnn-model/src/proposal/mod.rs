//! Region proposal network: anchors, objectness head, proposal filtering, and its losses.

pub mod anchors;
pub mod rpn;
pub mod rpn_loss;

pub use rpn::{RpnHead, RpnOutput};
pub use rpn_loss::RpnLosses;
