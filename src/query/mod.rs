//! Reading usage: the native usage API over the hourly rollups ([`usage`]), costs
//! ([`pricing`]), the toki CLI's query endpoint ([`toki`]), and VictoriaMetrics ([`vm`]: the
//! write path from the outbox and the isolated PromQL proxy). The three ways to read usage
//! agree: for the same user, window and grouping they return the same sums.

pub mod blocks;
pub mod columns;
pub mod export;
pub mod pricing;
pub mod records;
pub mod source;
pub mod time;
pub mod toki;
pub mod usage;
pub mod vm;

use std::time::Duration;

use crate::config::Config;

/// What the query endpoints need besides the store: prices and, when configured,
/// VictoriaMetrics.
pub struct QueryServices {
    pub prices: pricing::PriceTable,
    pub vm: Option<vm::Vm>,
}

impl QueryServices {
    /// Loads the price table (built in, plus `[pricing] file`) and sets up VictoriaMetrics.
    pub fn from_config(config: &Config) -> Result<QueryServices, String> {
        let prices = pricing::PriceTable::load(config.pricing.file.as_deref())?;
        tracing::info!("prices: {}", prices.describe());
        let vm = config
            .backend
            .vm_url
            .as_deref()
            .map(|url| vm::Vm::new(url, Duration::from_secs(config.backend.vm_timeout_secs)));
        Ok(QueryServices { prices, vm })
    }
}
