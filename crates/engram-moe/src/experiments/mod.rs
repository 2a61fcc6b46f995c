//! The seed experiments as library code, so that the CLI, the tests and other tools share them:
//! seed 001's raw attention on XOR/NAND ([`raw_attention`]), seed 000 notebook B's
//! self-attention cells ([`self_attention`]) and its "fork in the road" MoE ([`fork`]).

pub mod fork;
pub mod raw_attention;
pub mod self_attention;
