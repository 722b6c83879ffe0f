//! Devices: one per (user, device key). A device is registered by its first sync AUTH (or by the
//! device-code flow), shown by `/me/devices`, and deleted with all its usage data, leaving a
//! tombstone so the deleted machine is told `device_removed` until it signs in again.

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::codec::{CodecError, Dec, Enc, Record};
use super::events::EventKey;
use super::schema::{
    CURSORS, DEVICE_KEYS, DEVICE_TOMBSTONES, DEVICE_UUIDS, DEVICES, EVENTS, META_NEXT_DEVICE_ID, ROLLUPS,
    STREAM_KEYS, STREAMS, next_id,
};
use super::{Store, StoreError};

/// Device names are cut to this many characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Device keys longer than this are refused (the client sends a UUID).
pub const MAX_KEY_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: u32,
    pub uuid: Uuid,
    pub user: u32,
    /// The client's key (a UUID it keeps per machine).
    pub key: String,
    /// Shown name: the last reported name, or what the user renamed it to since.
    pub name: String,
    /// The name the client last reported in AUTH; a new report overwrites `name` only when it
    /// differs from this, so a rename in the web UI survives reconnects.
    pub reported_name: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
}

impl Record for Device {
    const NAME: &'static str = "device";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.uvar(u64::from(self.id));
        e.fixed(self.uuid.as_bytes());
        e.uvar(u64::from(self.user));
        e.str(&self.key);
        e.str(&self.name);
        e.str(&self.reported_name);
        e.ivar(self.created_at);
        e.opt_ivar(self.last_seen_at);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(Device {
            id: d.u32var()?,
            uuid: Uuid::from_bytes(d.fixed()?),
            user: d.u32var()?,
            key: d.string()?,
            name: d.string()?,
            reported_name: d.string()?,
            created_at: d.ivar()?,
            last_seen_at: d.opt_ivar()?,
        })
    }
}

/// Cuts a reported name to [`MAX_NAME_CHARS`] characters and strips control characters.
pub fn clean_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>().trim().to_owned()
}

#[derive(Debug)]
pub enum AuthDevice {
    Ready(Device),
    /// The key was deleted from the account.
    Removed,
    /// The token is bound to a device (device flow) that no longer exists.
    BoundDeviceGone,
    /// The token is bound to another device of the account than the one with this key.
    OtherDevice,
}

fn load(table: &impl ReadableTable<u32, &'static [u8]>, id: u32) -> Result<Option<Device>, StoreError> {
    Ok(table.get(id)?.map(|v| Device::decode(v.value())).transpose()?)
}

fn put(txn: &WriteTransaction, d: &Device) -> Result<(), StoreError> {
    txn.open_table(DEVICES)?.insert(d.id, d.encode().as_slice())?;
    Ok(())
}

/// Finds (user, key) or creates it; a new device gets `name` as both names.
pub fn find_or_create_in(
    txn: &WriteTransaction,
    user: u32,
    key: &str,
    name: &str,
    now: i64,
) -> Result<(Device, bool), StoreError> {
    let existing = txn.open_table(DEVICE_KEYS)?.get((user, key))?.map(|v| v.value());
    if let Some(id) = existing {
        if let Some(d) = load(&txn.open_table(DEVICES)?, id)? {
            return Ok((d, false));
        }
    }
    let id = next_id(txn, META_NEXT_DEVICE_ID, 1)?;
    let name = clean_name(name);
    let device = Device {
        id,
        uuid: Uuid::new_v4(),
        user,
        key: key.to_owned(),
        name: name.clone(),
        reported_name: name,
        created_at: now,
        last_seen_at: None,
    };
    txn.open_table(DEVICE_KEYS)?.insert((user, key), id)?;
    txn.open_table(DEVICE_UUIDS)?.insert(device.uuid.as_u128(), id)?;
    put(txn, &device)?;
    Ok((device, true))
}

/// Deletes a device with its events, rollups and cursors, and tombstones its key. Returns the
/// device, or `None` if it did not exist. Callers that run while sync is live must do this inside
/// the ingest writer so no batch for the device commits after it.
pub fn delete_in(txn: &WriteTransaction, id: u32, now: i64) -> Result<Option<Device>, StoreError> {
    let Some(device) = load(&txn.open_table(DEVICES)?, id)? else { return Ok(None) };
    txn.open_table(DEVICES)?.remove(id)?;
    txn.open_table(DEVICE_KEYS)?.remove((device.user, device.key.as_str()))?;
    txn.open_table(DEVICE_UUIDS)?.remove(device.uuid.as_u128())?;
    txn.open_table(DEVICE_TOMBSTONES)?.insert((device.user, device.key.as_str()), now)?;
    // The token family the device flow issued for it goes with it (the user, an admin and the
    // admin CLI all delete through here).
    super::tokens::revoke_device_in(txn, device.user, &device.uuid.to_string())?;
    let streams = super::streams::device_streams(&txn.open_table(STREAMS)?, id)?;
    for (provider, stream) in streams {
        let lo: EventKey = (stream, i64::MIN, 0);
        let hi: EventKey = (stream, i64::MAX, u64::MAX);
        txn.open_table(EVENTS)?.extract_from_if::<EventKey, _>(lo..=hi, |_, _| true)?.for_each(drop);
        txn.open_table(CURSORS)?.remove(stream)?;
        super::recent_spill::delete_stream_in(txn, stream)?;
        txn.open_table(STREAMS)?.remove((id, provider))?;
        txn.open_table(STREAM_KEYS)?.remove(stream)?;
    }
    let user = device.user;
    super::vm_outbox::device_deleted_in(txn, user, id, device.uuid)?;
    txn.open_table(ROLLUPS)?
        .extract_from_if::<super::events::RollupKey, _>(
            (user, 0, 0, 0, 0, 0)..=(user, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX),
            |k, _| k.2 == id,
        )?
        .for_each(drop);
    super::day_rollups::delete_device_in(txn, user, id)?;
    Ok(Some(device))
}

/// Registers (user, key) for the device-code flow: clears a tombstone and creates the device.
pub fn register_in(
    txn: &WriteTransaction,
    user: u32,
    key: &str,
    name: &str,
    now: i64,
) -> Result<Device, StoreError> {
    txn.open_table(DEVICE_TOMBSTONES)?.remove((user, key))?;
    let (mut device, created) = find_or_create_in(txn, user, key, name, now)?;
    let name = clean_name(name);
    if !created && !name.is_empty() && name != device.reported_name {
        device.name = name.clone();
        device.reported_name = name;
        put(txn, &device)?;
    }
    Ok(device)
}

impl Store {
    /// The device side of a sync AUTH: refuses tombstoned keys, finds or creates the device,
    /// updates last-seen, and takes the reported name if it changed since the last report.
    pub fn auth_device(
        &self,
        user: u32,
        key: &str,
        reported_name: &str,
        now: i64,
    ) -> Result<AuthDevice, StoreError> {
        self.auth_bound_device(user, key, reported_name, now, None)
    }

    /// [`Store::auth_device`] for a token bound to a device (`dev` claim, device flow): in the
    /// same transaction, that device must still exist, belong to `user` and have this key, so a
    /// deleted device's tokens cannot register a new device under another key.
    pub fn auth_bound_device(
        &self,
        user: u32,
        key: &str,
        reported_name: &str,
        now: i64,
        bound: Option<Uuid>,
    ) -> Result<AuthDevice, StoreError> {
        self.write(|txn| {
            if txn.open_table(DEVICE_TOMBSTONES)?.get((user, key))?.is_some() {
                return Ok(AuthDevice::Removed);
            }
            if let Some(uuid) = bound {
                let id = txn.open_table(DEVICE_UUIDS)?.get(uuid.as_u128())?.map(|v| v.value());
                let device = match id {
                    Some(id) => load(&txn.open_table(DEVICES)?, id)?,
                    None => None,
                };
                match device {
                    Some(d) if d.user == user && d.key == key => {}
                    Some(d) if d.user == user => return Ok(AuthDevice::OtherDevice),
                    _ => return Ok(AuthDevice::BoundDeviceGone),
                }
            }
            let (mut device, _) = find_or_create_in(txn, user, key, reported_name, now)?;
            // An empty report (no name configured and no host name) keeps the stored name, as
            // register_in does.
            let reported = clean_name(reported_name);
            if !reported.is_empty() && reported != device.reported_name {
                device.name = reported.clone();
                device.reported_name = reported;
            }
            device.last_seen_at = Some(now);
            put(txn, &device)?;
            Ok(AuthDevice::Ready(device))
        })
    }

    pub fn device(&self, id: u32) -> Result<Option<Device>, StoreError> {
        load(&self.read()?.open_table(DEVICES)?, id)
    }

    pub fn device_by_uuid(&self, uuid: Uuid) -> Result<Option<Device>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(DEVICE_UUIDS)?.get(uuid.as_u128())?.map(|v| v.value()) else {
            return Ok(None);
        };
        load(&txn.open_table(DEVICES)?, id)
    }

    /// Devices of one user (`Some`) or of everyone (`None`), by id.
    pub fn devices(&self, user: Option<u32>) -> Result<Vec<Device>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(DEVICES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            let d = Device::decode(v.value())?;
            if user.is_none_or(|u| u == d.user) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Renames a device (the name shown; the client's next report of a *new* name wins again).
    pub fn rename_device(&self, id: u32, name: &str) -> Result<Option<Device>, StoreError> {
        self.write(|txn| {
            let Some(mut d) = load(&txn.open_table(DEVICES)?, id)? else { return Ok(None) };
            d.name = clean_name(name);
            put(txn, &d)?;
            Ok(Some(d))
        })
    }

    /// Whether the device a token is bound to (`dev` claim) still exists for `user`.
    pub fn bound_device_exists(&self, user: u32, uuid: Uuid) -> Result<bool, StoreError> {
        Ok(self.device_by_uuid(uuid)?.is_some_and(|d| d.user == user))
    }

    pub fn is_tombstoned(&self, user: u32, key: &str) -> Result<bool, StoreError> {
        Ok(self.read()?.open_table(DEVICE_TOMBSTONES)?.get((user, key))?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_creates_updates_and_honours_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let AuthDevice::Ready(a) = s.auth_device(1, "key-1", "laptop", 100).unwrap() else { panic!() };
        assert_eq!((a.name.as_str(), a.last_seen_at), ("laptop", Some(100)));
        let AuthDevice::Ready(b) = s.auth_device(2, "key-1", "other", 100).unwrap() else { panic!() };
        assert_ne!(a.id, b.id, "the same key under two users is two devices");

        s.rename_device(a.id, "work").unwrap();
        let AuthDevice::Ready(a2) = s.auth_device(1, "key-1", "laptop", 200).unwrap() else { panic!() };
        assert_eq!(
            (a2.id, a2.name.as_str(), a2.last_seen_at),
            (a.id, "work", Some(200)),
            "unchanged report keeps the rename"
        );
        let AuthDevice::Ready(a3) = s.auth_device(1, "key-1", &"x".repeat(100), 300).unwrap() else {
            panic!()
        };
        assert_eq!(a3.name.chars().count(), MAX_NAME_CHARS, "a new report wins and is truncated");
        for empty in ["", "  ", "\u{7}"] {
            let AuthDevice::Ready(a4) = s.auth_device(1, "key-1", empty, 350).unwrap() else { panic!() };
            assert_eq!(
                (a4.name.clone(), a4.last_seen_at),
                (a3.name.clone(), Some(350)),
                "an empty report {empty:?} keeps the name"
            );
        }
        let AuthDevice::Ready(fresh) = s.auth_device(1, "key-2", "", 360).unwrap() else { panic!() };
        assert_eq!(fresh.name, "", "a new device without a reported name has none");

        s.write(|t| delete_in(t, a.id, 400)).unwrap();
        assert!(matches!(s.auth_device(1, "key-1", "laptop", 500).unwrap(), AuthDevice::Removed));
        assert!(s.device(a.id).unwrap().is_none());
        assert!(
            matches!(s.auth_device(2, "key-1", "other", 500).unwrap(), AuthDevice::Ready(_)),
            "other user unaffected"
        );
        let again = s.write(|t| register_in(t, 1, "key-1", "laptop", 600)).unwrap();
        assert_ne!(again.id, a.id, "a re-added device is a new device");
        assert!(
            matches!(s.auth_device(1, "key-1", "laptop", 700).unwrap(), AuthDevice::Ready(d) if d.id == again.id)
        );
    }
}
