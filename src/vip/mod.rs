//! VIP failover with VRRPv3 (RFC 9568), interoperable with keepalived.
pub mod fsm;
pub mod packet;
