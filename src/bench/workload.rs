//! Realistic synthetic usage: the models, projects, sessions and token sizes a team of Claude
//! Code and Codex users produces. Deterministic for a given seed, so runs are comparable.

use std::collections::HashMap;

use crate::sync::wire::{StoredEvent, SyncBatchPayload, SyncItem};

const CLAUDE_MODELS: &[&str] =
    &["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001"];
const CODEX_MODELS: &[&str] = &["gpt-5-codex", "gpt-5", "gpt-5-mini"];
const PROJECTS: &[&str] = &[
    "toki-sync",
    "toki",
    "website",
    "infra",
    "mobile-app",
    "data-pipeline",
    "docs",
    "billing",
    "search",
    "auth-service",
    "ml-experiments",
    "dotfiles",
];

/// splitmix64: small, fast and good enough for synthetic data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Roughly log-uniform in [lo, hi): token counts span orders of magnitude.
    pub fn log_between(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(2) as f64).ln());
        let x = l + (self.next_u64() as f64 / u64::MAX as f64) * (h - l);
        x.exp() as u64
    }
}

/// One device's stream of events for one provider. Events come in sessions: a session works
/// in one project with one main model (Claude Code also calls a small model for side tasks),
/// which is what makes hourly rollups far fewer than events in real data.
pub struct Stream {
    rng: Rng,
    provider: &'static str,
    device: u64,
    seq: u64,
    session_no: u64,
    session_left: u64,
    session_project: u32,
    session_model: u32,
}

impl Stream {
    pub fn new(provider: &'static str, device: u64, seed: u64) -> Stream {
        Stream {
            rng: Rng::new(seed.wrapping_mul(31).wrapping_add(device)),
            provider,
            device,
            seq: 0,
            session_no: 0,
            session_left: 0,
            session_project: 0,
            session_model: 0,
        }
    }

    /// A batch of `size` events, timestamps from `start_ms` spaced `step_ms` apart.
    pub fn batch(&mut self, size: usize, start_ms: i64, step_ms: i64) -> SyncBatchPayload {
        let claude = self.provider == "claude_code";
        let models = if claude { CLAUDE_MODELS } else { CODEX_MODELS };
        // Batch-local dict ids: models first, then projects, then sessions.
        let mut dict: HashMap<u32, String> = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            dict.insert(i as u32, (*m).to_owned());
        }
        let proj_base = models.len() as u32;
        for (i, p) in PROJECTS.iter().enumerate() {
            dict.insert(proj_base + i as u32, (*p).to_owned());
        }
        let session_base = proj_base + PROJECTS.len() as u32;
        let mut items = Vec::with_capacity(size);
        for i in 0..size {
            self.seq += 1;
            if self.session_left == 0 {
                self.session_no += 1;
                self.session_left = 100 + self.rng.below(500);
                // A few projects get most of the work.
                self.session_project = (self.rng.below(PROJECTS.len() as u64)
                    * self.rng.below(PROJECTS.len() as u64)
                    / PROJECTS.len() as u64) as u32;
                self.session_model = if self.rng.below(3) == 0 { 1 } else { 0 };
            }
            self.session_left -= 1;
            let r = &mut self.rng;
            let model = if r.below(10) == 0 { 2 } else { self.session_model };
            let project = proj_base + self.session_project;
            let session = session_base + (self.session_no % 4) as u32;
            let (device, session_no) = (self.device, self.session_no);
            dict.entry(session).or_insert_with(|| {
                format!("{device:08x}-{:04x}-4000-8000-{session_no:012x}", session_no & 0xffff)
            });
            let input = r.log_between(5, 20_000);
            let output = r.log_between(20, 4_000);
            let (tokens, usage_total, message_id) = if claude {
                let cache_create = if r.below(4) == 0 { r.log_between(500, 30_000) } else { 0 };
                let cache_read = r.log_between(1_000, 200_000);
                let id = format!(
                    "msg_01{:016x}{:06x}",
                    self.device.wrapping_mul(0x1000_0000) ^ self.seq,
                    self.seq & 0xff_ffff
                );
                (
                    vec![input, output, cache_create, cache_read],
                    input + output + cache_create + cache_read,
                    id,
                )
            } else {
                let cached = input / 2;
                let reasoning = output / 3;
                (vec![input, output, reasoning, cached], input + output, "codex".to_owned())
            };
            items.push(SyncItem {
                ts_ms: start_ms + i as i64 * step_ms,
                message_id,
                event: StoredEvent {
                    model_id: model,
                    session_id: session,
                    source_file_id: 0,
                    project_name_id: project,
                    tokens,
                },
                usage_total,
                is_correction: false,
            });
        }
        let columns: &[&str] = if claude {
            &["input", "output", "cache_create", "cache_read"]
        } else {
            &["input", "output", "reasoning_output", "cached_input"]
        };
        SyncBatchPayload {
            items,
            dict,
            provider: self.provider.to_owned(),
            token_columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        }
    }
}
