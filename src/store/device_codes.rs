//! Pending device-code logins (RFC 8628): created by `POST /device/code`, approved or denied by a
//! signed-in user in the browser, redeemed once by the polling client.
//!
//! Records are keyed by the SHA-256 of the device code, so the file never holds a usable code;
//! the short user code is kept in clear (it is useless without a signed-in approver, and it
//! expires). A redeemed code stays as a `Redeemed` record that expires at once, so the approval
//! page keeps answering "already approved" for [`EXPIRED_KEPT_SECS`]. Expired records are removed
//! whenever a new code is created, so the table stays as small as the number of sign-ins in
//! progress.

use std::collections::HashMap;
use std::net::IpAddr;

use redb::{ReadableTable, WriteTransaction};

use super::codec::{CodecError, Dec, Enc, Record};
use super::schema::{DEVICE_CODES, DEVICE_USER_CODES};
use super::{Store, StoreError};

pub type CodeHash = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeStatus {
    Pending,
    /// Approved by this user; the next poll gets their tokens.
    Approved {
        user: u32,
    },
    Denied,
    /// Approved by this user and redeemed by the client: never usable again, kept only so that
    /// the approval page answers "already approved" (not "unknown code", a lockout strike).
    Redeemed {
        user: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCode {
    /// `XXXX-XXXX`, as shown to the user.
    pub user_code: String,
    /// From the code request (reference clients) or the first poll (the toki client).
    pub device_name: Option<String>,
    /// Who asked for the code (IPv4 as IPv6-mapped), for the per-address limit.
    pub client_ip: [u8; 16],
    pub created_at: i64,
    pub expires_at: i64,
    /// Unix milliseconds of the last poll that was answered (not of polls told to slow down).
    pub last_poll_ms: Option<i64>,
    pub status: CodeStatus,
}

impl Record for DeviceCode {
    const NAME: &'static str = "device code";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.str(&self.user_code);
        e.opt_str(self.device_name.as_deref());
        e.fixed(&self.client_ip);
        e.ivar(self.created_at);
        e.ivar(self.expires_at);
        e.opt_ivar(self.last_poll_ms);
        match self.status {
            CodeStatus::Pending => e.u8(0),
            CodeStatus::Approved { user } => {
                e.u8(1);
                e.uvar(u64::from(user));
            }
            CodeStatus::Denied => e.u8(2),
            CodeStatus::Redeemed { user } => {
                e.u8(3);
                e.uvar(u64::from(user));
            }
        }
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(DeviceCode {
            user_code: d.string()?,
            device_name: d.opt_string()?,
            client_ip: d.fixed()?,
            created_at: d.ivar()?,
            expires_at: d.ivar()?,
            last_poll_ms: d.opt_ivar()?,
            status: match d.u8()? {
                0 => CodeStatus::Pending,
                1 => CodeStatus::Approved { user: d.u32var()? },
                2 => CodeStatus::Denied,
                3 => CodeStatus::Redeemed { user: d.u32var()? },
                b => return Err(CodecError(format!("unknown device code status {b}"))),
            },
        })
    }
}

impl DeviceCode {
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// Approved, and still answered as approved: before it expires, or redeemed (kept a while).
    pub fn is_approved(&self, now: i64) -> bool {
        match self.status {
            CodeStatus::Redeemed { .. } => true,
            CodeStatus::Approved { .. } => !self.is_expired(now),
            CodeStatus::Pending | CodeStatus::Denied => false,
        }
    }
}

/// An address in the form stored in [`DeviceCode::client_ip`].
pub fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[derive(Debug)]
pub enum CreateError {
    /// This address already has `per_address` codes in progress.
    TooManyFromAddress,
    /// The server has `total` codes in progress and no address holds more than its share.
    TooMany,
    Store(StoreError),
}

/// Why a user code cannot be approved or denied.
#[derive(Debug)]
pub enum DecideError {
    Unknown,
    Expired,
    AlreadyApproved,
    AlreadyDenied,
    Store(StoreError),
}

super::outcome_wraps_store_error!(CreateError, DecideError);

/// What a poll finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollState {
    /// Never issued, already redeemed, or expired (an expired record is removed).
    Unknown,
    /// Polled again sooner than allowed; nothing was recorded.
    SlowDown,
    Pending,
    Denied,
    Approved {
        user: u32,
    },
}

/// One address's live codes while checking the limits: how many, and its oldest pending one
/// (created at, hash, user code).
type AddressCodes = (usize, Option<(i64, CodeHash, String)>);

pub struct Limits {
    pub total: usize,
    pub per_address: usize,
}

fn load(
    table: &impl ReadableTable<CodeHash, &'static [u8]>,
    hash: CodeHash,
) -> Result<Option<DeviceCode>, StoreError> {
    Ok(table.get(hash)?.map(|v| DeviceCode::decode(v.value())).transpose()?)
}

fn put(txn: &WriteTransaction, hash: CodeHash, rec: &DeviceCode) -> Result<(), StoreError> {
    txn.open_table(DEVICE_CODES)?.insert(hash, rec.encode().as_slice())?;
    Ok(())
}

/// How long an expired code is kept before pruning: meanwhile the approval page answers "code
/// expired" (410, no lockout strike) rather than "unknown code" (404, a strike) to a user who
/// comes back to it late.
pub const EXPIRED_KEPT_SECS: i64 = 3600;

/// Removes codes expired more than [`EXPIRED_KEPT_SECS`] ago; returns how many.
pub fn prune_in(txn: &WriteTransaction, now: i64) -> Result<usize, StoreError> {
    let mut user_codes = Vec::new();
    txn.open_table(DEVICE_CODES)?
        .extract_from_if::<CodeHash, _>(.., |_, v| match DeviceCode::decode(v) {
            Ok(rec) if rec.is_expired(now - EXPIRED_KEPT_SECS) => {
                user_codes.push(rec.user_code);
                true
            }
            Ok(_) => false,
            // Unreadable: no poll or approval can use it.
            Err(_) => true,
        })?
        .for_each(drop);
    let mut by_user_code = txn.open_table(DEVICE_USER_CODES)?;
    for code in &user_codes {
        by_user_code.remove(code.as_str())?;
    }
    Ok(user_codes.len())
}

/// Redeems an approved, unexpired code (single use): it becomes `Redeemed` and expires now, so
/// it no longer counts against the limits and is pruned [`EXPIRED_KEPT_SECS`] later. `None` if it
/// is not (or no longer) approved: a concurrent poll redeemed it first, or it expired.
pub fn redeem_in(
    txn: &WriteTransaction,
    hash: CodeHash,
    now: i64,
) -> Result<Option<(u32, DeviceCode)>, StoreError> {
    let Some(rec) = load(&txn.open_table(DEVICE_CODES)?, hash)? else { return Ok(None) };
    match rec.status {
        CodeStatus::Approved { user } if !rec.is_expired(now) => {
            let redeemed =
                DeviceCode { status: CodeStatus::Redeemed { user }, expires_at: now, ..rec.clone() };
            put(txn, hash, &redeemed)?;
            Ok(Some((user, rec)))
        }
        _ => Ok(None),
    }
}

impl Store {
    /// Stores a new code after pruning expired ones, unless a limit is reached. `user_code`
    /// makes candidate user codes; one already in use is replaced by the next candidate.
    pub fn create_device_code(
        &self,
        hash: CodeHash,
        mut rec: DeviceCode,
        limits: &Limits,
        mut user_code: impl FnMut() -> String,
    ) -> Result<DeviceCode, CreateError> {
        self.write(|txn| {
            prune_in(txn, rec.created_at)?;
            let mut total = 0usize;
            // Per address: live codes, and the oldest pending one (the one given up if the
            // address holds the most when the table is full).
            let mut by_address: HashMap<[u8; 16], AddressCodes> = HashMap::new();
            // Expired codes still kept (see EXPIRED_KEPT_SECS) do not count against the limits.
            for row in txn.open_table(DEVICE_CODES)?.iter()? {
                let (k, v) = row?;
                let other = DeviceCode::decode(v.value())?;
                if other.is_expired(rec.created_at) {
                    continue;
                }
                total += 1;
                let entry = by_address.entry(other.client_ip).or_insert((0, None));
                entry.0 += 1;
                if other.status == CodeStatus::Pending
                    && entry.1.as_ref().is_none_or(|o| other.created_at < o.0)
                {
                    entry.1 = Some((other.created_at, k.value(), other.user_code));
                }
            }
            let mine = by_address.get(&rec.client_ip).map_or(0, |e| e.0);
            if mine >= limits.per_address {
                return Err(CreateError::TooManyFromAddress);
            }
            if total >= limits.total {
                // Full: degrade per address, not for everyone. The address holding the most
                // codes gives up its oldest pending one, if it holds more than this address
                // would; only when every address holds about as few is the answer "try later".
                let victim = by_address
                    .iter()
                    .filter(|(_, (n, oldest))| *n > mine + 1 && oldest.is_some())
                    .max_by_key(|(ip, (n, _))| (*n, **ip))
                    .and_then(|(_, (_, oldest))| oldest.clone());
                let Some((_, hash, user_code)) = victim else { return Err(CreateError::TooMany) };
                txn.open_table(DEVICE_CODES)?.remove(hash)?;
                txn.open_table(DEVICE_USER_CODES)?.remove(user_code.as_str())?;
            }
            let mut by_user_code = txn.open_table(DEVICE_USER_CODES)?;
            while by_user_code.get(rec.user_code.as_str())?.is_some() {
                rec.user_code = user_code();
            }
            by_user_code.insert(rec.user_code.as_str(), hash)?;
            drop(by_user_code);
            put(txn, hash, &rec)?;
            Ok(rec)
        })
    }

    /// The code behind a user code, if it exists (expired or not).
    pub fn device_code_by_user_code(&self, user_code: &str) -> Result<Option<DeviceCode>, StoreError> {
        let txn = self.read()?;
        let Some(hash) = txn.open_table(DEVICE_USER_CODES)?.get(user_code)?.map(|v| v.value()) else {
            return Ok(None);
        };
        load(&txn.open_table(DEVICE_CODES)?, hash)
    }

    /// Approves (for `user`) or denies a pending code.
    pub fn decide_device_code(
        &self,
        user_code: &str,
        user: u32,
        approve: bool,
        now: i64,
    ) -> Result<DeviceCode, DecideError> {
        self.write(|txn| {
            let Some(hash) = txn.open_table(DEVICE_USER_CODES)?.get(user_code)?.map(|v| v.value()) else {
                return Err(DecideError::Unknown);
            };
            let mut rec = load(&txn.open_table(DEVICE_CODES)?, hash)?.ok_or(DecideError::Unknown)?;
            if rec.is_approved(now) {
                return Err(DecideError::AlreadyApproved);
            }
            if rec.is_expired(now) {
                return Err(DecideError::Expired);
            }
            match rec.status {
                CodeStatus::Approved { .. } | CodeStatus::Redeemed { .. } => {
                    return Err(DecideError::AlreadyApproved);
                }
                CodeStatus::Denied => return Err(DecideError::AlreadyDenied),
                CodeStatus::Pending => {}
            }
            rec.status = if approve { CodeStatus::Approved { user } } else { CodeStatus::Denied };
            put(txn, hash, &rec)?;
            Ok(rec)
        })
    }

    /// One poll of the device-code endpoint. A pending code polled less than `min_gap_ms` after
    /// the previous answered poll is told to slow down without any write, so a client polling
    /// in a loop costs reads only. `device_name` (sent with polls by the toki client) is kept
    /// for the approval page.
    pub fn poll_device_code(
        &self,
        hash: CodeHash,
        now_ms: i64,
        min_gap_ms: i64,
        device_name: Option<&str>,
    ) -> Result<PollState, StoreError> {
        let now = now_ms.div_euclid(1000);
        let Some(rec) = load(&self.read()?.open_table(DEVICE_CODES)?, hash)? else {
            return Ok(PollState::Unknown);
        };
        if rec.is_expired(now) {
            // Left for pruning: the approval page still recognises it as expired.
            return Ok(PollState::Unknown);
        }
        match rec.status {
            CodeStatus::Denied => return Ok(PollState::Denied),
            CodeStatus::Approved { user } => return Ok(PollState::Approved { user }),
            CodeStatus::Redeemed { .. } => return Ok(PollState::Unknown),
            CodeStatus::Pending => {}
        }
        if rec.last_poll_ms.is_some_and(|last| now_ms - last < min_gap_ms) {
            return Ok(PollState::SlowDown);
        }
        self.write(|txn| {
            // Read again inside the write: an approval may have landed since the read above.
            let Some(mut rec) = load(&txn.open_table(DEVICE_CODES)?, hash)? else {
                return Ok(PollState::Unknown);
            };
            Ok(match rec.status {
                CodeStatus::Denied => PollState::Denied,
                CodeStatus::Approved { user } => PollState::Approved { user },
                CodeStatus::Redeemed { .. } => PollState::Unknown,
                CodeStatus::Pending => {
                    rec.last_poll_ms = Some(now_ms);
                    if let Some(name) = device_name.filter(|n| !n.is_empty()) {
                        rec.device_name = Some(name.to_owned());
                    }
                    put(txn, hash, &rec)?;
                    PollState::Pending
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(user_code: &str, ip: u8, now: i64) -> DeviceCode {
        DeviceCode {
            user_code: user_code.into(),
            device_name: None,
            client_ip: ip_bytes(IpAddr::from([10, 0, 0, ip])),
            created_at: now,
            expires_at: now + 900,
            last_poll_ms: None,
            status: CodeStatus::Pending,
        }
    }

    #[test]
    fn lifecycle_limits_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let limits = Limits { total: 3, per_address: 2 };
        let never = || -> String { unreachable!("no collision expected") };
        s.create_device_code([1; 32], code("AAAA-AAAA", 1, 1000), &limits, never).unwrap();
        // A taken user code is replaced by the next candidate.
        let mut next = vec!["CCCC-CCCC".to_owned()];
        let b = s
            .create_device_code([2; 32], code("AAAA-AAAA", 1, 1000), &limits, || next.pop().unwrap())
            .unwrap();
        assert_eq!(b.user_code, "CCCC-CCCC");
        assert!(matches!(
            s.create_device_code([3; 32], code("DDDD-DDDD", 1, 1000), &limits, never),
            Err(CreateError::TooManyFromAddress)
        ));
        s.create_device_code([3; 32], code("DDDD-DDDD", 2, 1000), &limits, never).unwrap();
        // Full, and address 2 would hold as many as the biggest holder: try later.
        assert!(matches!(
            s.create_device_code([4; 32], code("EEEE-EEEE", 2, 1000), &limits, never),
            Err(CreateError::TooMany)
        ));

        // Poll pacing, approval, single-use redemption.
        assert_eq!(s.poll_device_code([1; 32], 1_000_000, 4000, Some("laptop")).unwrap(), PollState::Pending);
        assert_eq!(s.poll_device_code([1; 32], 1_003_000, 4000, None).unwrap(), PollState::SlowDown);
        assert_eq!(s.poll_device_code([1; 32], 1_004_000, 4000, None).unwrap(), PollState::Pending);
        assert_eq!(
            s.device_code_by_user_code("AAAA-AAAA").unwrap().unwrap().device_name.as_deref(),
            Some("laptop")
        );
        s.decide_device_code("AAAA-AAAA", 7, true, 1005).unwrap();
        assert!(matches!(
            s.decide_device_code("AAAA-AAAA", 7, false, 1005),
            Err(DecideError::AlreadyApproved)
        ));
        assert_eq!(
            s.poll_device_code([1; 32], 1_004_001, 4000, None).unwrap(),
            PollState::Approved { user: 7 }
        );
        let (user, _) = s.write(|t| redeem_in(t, [1; 32], 1006)).unwrap().unwrap();
        assert_eq!(user, 7);
        assert!(s.write(|t| redeem_in(t, [1; 32], 1006)).unwrap().is_none(), "single use");
        assert_eq!(s.poll_device_code([1; 32], 1_006_000, 4000, None).unwrap(), PollState::Unknown);
        // A redeemed code answers like an approved one (the approver reloading the page), for as
        // long as an expired code is kept, and no longer counts against the limits.
        for (user, approve) in [(7, true), (8, false)] {
            assert!(matches!(
                s.decide_device_code("AAAA-AAAA", user, approve, 1006 + EXPIRED_KEPT_SECS - 1),
                Err(DecideError::AlreadyApproved)
            ));
        }
        assert!(s.device_code_by_user_code("AAAA-AAAA").unwrap().unwrap().is_approved(1006));

        s.decide_device_code("CCCC-CCCC", 7, false, 1005).unwrap();
        assert_eq!(s.poll_device_code([2; 32], 1_005_000, 4000, None).unwrap(), PollState::Denied);
        assert!(
            s.write(|t| redeem_in(t, [2; 32], 1006)).unwrap().is_none(),
            "a denied code is never redeemed"
        );

        // Expiry: refused for approval, unknown to polls, kept (not counted against the limits)
        // for EXPIRED_KEPT_SECS so the page can say "expired", then pruned on a later creation.
        assert!(matches!(s.decide_device_code("DDDD-DDDD", 7, true, 1900), Err(DecideError::Expired)));
        assert_eq!(s.poll_device_code([3; 32], 1_900_000, 4000, None).unwrap(), PollState::Unknown);
        s.create_device_code([5; 32], code("FFFF-FFFF", 1, 2000), &limits, never).unwrap();
        s.create_device_code([6; 32], code("GGGG-GGGG", 1, 2000), &limits, never).unwrap();
        assert!(
            matches!(s.decide_device_code("DDDD-DDDD", 7, true, 2000), Err(DecideError::Expired)),
            "kept a while"
        );
        s.create_device_code([7; 32], code("HHHH-HHHH", 2, 1900 + EXPIRED_KEPT_SECS), &limits, never)
            .unwrap();
        assert!(s.device_code_by_user_code("DDDD-DDDD").unwrap().is_none(), "pruned");
        assert!(s.device_code_by_user_code("AAAA-AAAA").unwrap().is_none(), "redeemed, then pruned");
        assert!(matches!(s.decide_device_code("DDDD-DDDD", 7, true, 6000), Err(DecideError::Unknown)));
        assert_eq!(s.poll_device_code([5; 32], 2_900_000, 4000, None).unwrap(), PollState::Unknown);
    }

    /// Issue 16: many addresses filling the table must not refuse everyone; the biggest holder
    /// gives up its oldest pending code to an address with fewer.
    #[test]
    fn a_full_table_degrades_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let limits = Limits { total: 4, per_address: 3 };
        let never = || -> String { unreachable!("no collision expected") };
        s.create_device_code([1; 32], code("AAAA-AAAA", 1, 1000), &limits, never).unwrap();
        s.create_device_code([2; 32], code("BBBB-BBBB", 1, 1001), &limits, never).unwrap();
        s.create_device_code([3; 32], code("CCCC-CCCC", 1, 1002), &limits, never).unwrap();
        s.create_device_code([4; 32], code("DDDD-DDDD", 2, 1003), &limits, never).unwrap();
        // Full. Address 3 holds none; address 1 holds three: its oldest goes.
        s.create_device_code([5; 32], code("EEEE-EEEE", 3, 1004), &limits, never).unwrap();
        assert!(s.device_code_by_user_code("AAAA-AAAA").unwrap().is_none());
        assert!(s.device_code_by_user_code("BBBB-BBBB").unwrap().is_some());
        // Approved codes are never given up: approve address 1's others, then 1 has nothing to lose.
        s.decide_device_code("BBBB-BBBB", 7, true, 1005).unwrap();
        s.decide_device_code("CCCC-CCCC", 7, true, 1005).unwrap();
        assert!(matches!(
            s.create_device_code([6; 32], code("FFFF-FFFF", 4, 1006), &limits, never),
            Err(CreateError::TooMany)
        ));
        assert!(s.device_code_by_user_code("BBBB-BBBB").unwrap().is_some());
    }
}
