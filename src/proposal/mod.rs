//! Region proposal network: anchors, objectness head, proposal filtering.

pub mod anchors;
pub mod rpn;
