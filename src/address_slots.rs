//! Live connections per address group ([`crate::net::address_group`]: an IPv4 address, or an
//! IPv6 /64), for the per-address connection caps of the HTTP and sync listeners.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::fasthash::FxHashMap;
use crate::net::address_group;

#[derive(Default)]
pub struct AddressSlots {
    live: Mutex<FxHashMap<IpAddr, usize>>,
}

/// One live connection of an address group; given back when dropped.
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    group: IpAddr,
}

impl AddressSlots {
    pub fn new() -> Arc<Self> {
        Arc::new(AddressSlots::default())
    }

    /// Counts a new connection from `ip`; returns its slot and the number of live connections of
    /// its group, this one included.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> (AddressSlot, usize) {
        let group = address_group(ip);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let n = live.entry(group).or_insert(0);
        *n += 1;
        let count = *n;
        drop(live);
        (AddressSlot { slots: Arc::clone(self), group }, count)
    }

    /// Address groups with live connections (an idle server holds none).
    pub fn groups(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut live = self.slots.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = live.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_group_and_forgets_empty_groups() {
        let slots = AddressSlots::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (a, n) = slots.take(ip("10.0.0.1"));
        assert_eq!(n, 1);
        let (b, n) = slots.take(ip("::ffff:10.0.0.1"));
        assert_eq!(n, 2, "IPv4-mapped is the same address");
        let (c, n) = slots.take(ip("2001:db8::1"));
        assert_eq!(n, 1);
        let (d, n) = slots.take(ip("2001:db8::ffff:2"));
        assert_eq!(n, 2, "one IPv6 /64 is one group");
        assert_eq!(slots.groups(), 2);
        drop((a, b, c));
        assert_eq!(slots.groups(), 1);
        drop(d);
        assert_eq!(slots.groups(), 0);
    }
}
