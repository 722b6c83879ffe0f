//! What the token columns mean (protocol.md §8). Claude Code sends `input, output, cache_create,
//! cache_read`, all disjoint. Codex sends `input, output, reasoning_output, cached_input`, where
//! `cached_input` is part of `input` and `reasoning_output` is part of `output`. Other providers'
//! columns are stored as given and shown, but neither priced nor mapped.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Input,
    Output,
    CacheCreate,
    CacheRead,
    /// Codex: part of `output`.
    ReasoningOutput,
    /// Codex: part of `input`, billed at the cache-read price.
    CachedInput,
    Other,
}

impl Column {
    pub fn from_name(name: &str) -> Column {
        match name {
            "input" => Column::Input,
            "output" => Column::Output,
            "cache_create" => Column::CacheCreate,
            "cache_read" => Column::CacheRead,
            "reasoning_output" => Column::ReasoningOutput,
            "cached_input" => Column::CachedInput,
            _ => Column::Other,
        }
    }

    /// The column the toki CLI shows it in (compat.md §6.4: Codex reasoning under cache_create,
    /// cached input under cache_read, as the client shows Codex locally). `None`: keep the name.
    pub fn toki_type(self) -> Option<&'static str> {
        match self {
            Column::Input => Some("input"),
            Column::Output => Some("output"),
            Column::CacheCreate | Column::ReasoningOutput => Some("cache_create"),
            Column::CacheRead | Column::CachedInput => Some("cache_read"),
            Column::Other => None,
        }
    }
}

/// The four columns every usage response shows, whatever the provider.
pub const STANDARD: [&str; 4] = ["input", "output", "cache_create", "cache_read"];
