//! Saffron's library part: the pieces that are useful on their own and are
//! tested or fuzzed without a VM (today: the SPICE server).

pub mod spice;
