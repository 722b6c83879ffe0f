//! `GET /api/v1/toki/query`: the toki CLI's remote query (`toki query --remote`, compat.md §6).

pub mod eval;
pub mod parse;
