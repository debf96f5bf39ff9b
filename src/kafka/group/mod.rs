//! Membership in the Kafka consumer group `group_id` (classic protocol), beside hetida's own
//! aiokafka consumers of the same group.
//!
//! * [`assignor`]: the embedded "consumer" protocol (a member's subscription, the leader's
//!   assignment) and the `roundrobin` and `range` assignors, computed exactly as aiokafka 0.10
//!   computes them. Pure: no IO.

pub mod assignor;
