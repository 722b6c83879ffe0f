//! User accounts.

use std::ops::Bound;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::codec::{CodecError, Dec, Enc, Record};
use super::schema::{
    DEVICE_KEYS, DEVICE_TOMBSTONES, META_NEXT_USER_ID, OIDC_IDENTITIES, USER_NAMES, USER_UUIDS, USERS,
    next_id,
};
use super::{Store, StoreError, devices, teams, tokens};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    /// Registered in approval mode; waits for an admin.
    Pending,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Pending => "pending",
            UserStatus::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    /// Compact id used in keys inside the file.
    pub id: u32,
    /// Id shown to clients and carried in tokens.
    pub uuid: Uuid,
    pub username: String,
    pub role: Role,
    pub status: UserStatus,
    /// argon2id PHC string; `None` for accounts that sign in only through OIDC.
    pub password_hash: Option<String>,
    /// OIDC identity for accounts linked to a provider: [`oidc_key`] of its `iss` and `sub`.
    pub oidc_subject: Option<String>,
    pub created_at: i64,
}

impl Record for User {
    const NAME: &'static str = "user";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.uvar(u64::from(self.id));
        e.fixed(self.uuid.as_bytes());
        e.str(&self.username);
        e.u8(match self.role {
            Role::User => 0,
            Role::Admin => 1,
        });
        e.u8(match self.status {
            UserStatus::Active => 0,
            UserStatus::Pending => 1,
            UserStatus::Disabled => 2,
        });
        e.opt_str(self.password_hash.as_deref());
        e.opt_str(self.oidc_subject.as_deref());
        e.ivar(self.created_at);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(User {
            id: d.u32var()?,
            uuid: Uuid::from_bytes(d.fixed()?),
            username: d.string()?,
            role: match d.u8()? {
                0 => Role::User,
                1 => Role::Admin,
                b => return Err(CodecError(format!("unknown role {b}"))),
            },
            status: match d.u8()? {
                0 => UserStatus::Active,
                1 => UserStatus::Pending,
                2 => UserStatus::Disabled,
                b => return Err(CodecError(format!("unknown status {b}"))),
            },
            password_hash: d.opt_string()?,
            oidc_subject: d.opt_string()?,
            created_at: d.ivar()?,
        })
    }
}

pub struct NewUser {
    pub username: String,
    pub role: Role,
    pub status: UserStatus,
    pub password_hash: Option<String>,
    pub oidc_subject: Option<String>,
}

/// Outcomes of user changes that are not storage failures.
#[derive(Debug)]
pub enum UserError {
    NotFound,
    DuplicateName,
    /// The change would leave no active admin.
    LastAdmin,
    /// The OIDC identity already belongs to another account.
    IdentityTaken,
    Store(StoreError),
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        UserError::Store(e)
    }
}

impl From<redb::TableError> for UserError {
    fn from(e: redb::TableError) -> Self {
        UserError::Store(e.into())
    }
}

impl From<redb::StorageError> for UserError {
    fn from(e: redb::StorageError) -> Self {
        UserError::Store(e.into())
    }
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::NotFound => f.write_str("user not found"),
            UserError::DuplicateName => f.write_str("username already exists"),
            UserError::LastAdmin => f.write_str("this would leave the server without an active admin"),
            UserError::IdentityTaken => {
                f.write_str("this OIDC identity is already linked to another account")
            }
            UserError::Store(e) => e.fmt(f),
        }
    }
}

/// The stored form of an OIDC identity: issuer and subject, which together (never email or name)
/// identify a provider's user. An issuer URL cannot contain `|`, so the split is unambiguous.
pub fn oidc_key(issuer: &str, subject: &str) -> String {
    format!("{issuer}|{subject}")
}

/// The subject part of an [`oidc_key`].
pub fn oidc_subject_of(key: &str) -> &str {
    key.split_once('|').map_or(key, |(_, s)| s)
}

/// Usernames are unique ignoring case.
pub fn name_key(username: &str) -> String {
    username.to_lowercase()
}

fn load(table: &impl ReadableTable<u32, &'static [u8]>, id: u32) -> Result<Option<User>, StoreError> {
    match table.get(id)? {
        Some(v) => Ok(Some(User::decode(v.value())?)),
        None => Ok(None),
    }
}

/// A user read inside a write transaction (to check a state and change it atomically).
pub fn user_in(txn: &WriteTransaction, id: u32) -> Result<Option<User>, StoreError> {
    load(&txn.open_table(USERS)?, id)
}

fn put(txn: &WriteTransaction, user: &User) -> Result<(), StoreError> {
    txn.open_table(USERS)?.insert(user.id, user.encode().as_slice())?;
    Ok(())
}

fn active_admins(txn: &WriteTransaction) -> Result<usize, StoreError> {
    let table = txn.open_table(USERS)?;
    let mut n = 0;
    for row in table.iter()? {
        let (_, v) = row?;
        let u = User::decode(v.value())?;
        if u.role == Role::Admin && u.status == UserStatus::Active {
            n += 1;
        }
    }
    Ok(n)
}

fn would_lose_last_admin(
    txn: &WriteTransaction,
    before: &User,
    after: Option<&User>,
) -> Result<bool, StoreError> {
    let was = before.role == Role::Admin && before.status == UserStatus::Active;
    let stays = after.is_some_and(|u| u.role == Role::Admin && u.status == UserStatus::Active);
    Ok(was && !stays && active_admins(txn)? <= 1)
}

impl Store {
    pub fn create_user(&self, new: NewUser) -> Result<User, UserError> {
        self.write(|txn| {
            let key = name_key(&new.username);
            let mut names = txn.open_table(USER_NAMES)?;
            if names.get(key.as_str())?.is_some() {
                return Err(UserError::DuplicateName);
            }
            if let Some(identity) = &new.oidc_subject {
                if txn.open_table(OIDC_IDENTITIES)?.get(identity.as_str())?.is_some() {
                    return Err(UserError::IdentityTaken);
                }
            }
            let id = next_id(txn, META_NEXT_USER_ID, 1)?;
            let user = User {
                id,
                uuid: Uuid::new_v4(),
                username: new.username,
                role: new.role,
                status: new.status,
                password_hash: new.password_hash,
                oidc_subject: new.oidc_subject,
                created_at: super::now_secs(),
            };
            names.insert(key.as_str(), id)?;
            txn.open_table(USER_UUIDS)?.insert(user.uuid.as_u128(), id)?;
            if let Some(identity) = &user.oidc_subject {
                txn.open_table(OIDC_IDENTITIES)?.insert(identity.as_str(), id)?;
            }
            put(txn, &user)?;
            Ok(user)
        })
    }

    pub fn user(&self, id: u32) -> Result<Option<User>, StoreError> {
        let txn = self.read()?;
        load(&txn.open_table(USERS)?, id)
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(USER_NAMES)?.get(name_key(username).as_str())?.map(|v| v.value())
        else {
            return Ok(None);
        };
        load(&txn.open_table(USERS)?, id)
    }

    pub fn user_by_uuid(&self, uuid: Uuid) -> Result<Option<User>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(USER_UUIDS)?.get(uuid.as_u128())?.map(|v| v.value()) else {
            return Ok(None);
        };
        load(&txn.open_table(USERS)?, id)
    }

    /// The account linked to an OIDC identity ([`oidc_key`]).
    pub fn user_by_oidc(&self, identity: &str) -> Result<Option<User>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(OIDC_IDENTITIES)?.get(identity)?.map(|v| v.value()) else {
            return Ok(None);
        };
        load(&txn.open_table(USERS)?, id)
    }

    /// Links an account to an OIDC identity (replacing an earlier link), so it can sign in
    /// through the provider. Refused if another account holds the identity.
    pub fn link_oidc(&self, id: u32, identity: &str) -> Result<User, UserError> {
        self.write(|txn| {
            let mut user = load(&txn.open_table(USERS)?, id)?.ok_or(UserError::NotFound)?;
            let mut index = txn.open_table(OIDC_IDENTITIES)?;
            if let Some(holder) = index.get(identity)?.map(|v| v.value()) {
                if holder != id {
                    return Err(UserError::IdentityTaken);
                }
            }
            if let Some(old) = &user.oidc_subject {
                index.remove(old.as_str())?;
            }
            index.insert(identity, id)?;
            drop(index);
            user.oidc_subject = Some(identity.to_owned());
            put(txn, &user)?;
            Ok(user)
        })
    }

    /// All users, ordered by id (creation order).
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(USERS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(User::decode(v.value())?);
        }
        Ok(out)
    }

    pub fn count_users(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        Ok(txn.open_table(USERS)?.len()?)
    }

    /// Applies `change` to a user, refusing changes that leave no active admin.
    pub fn update_user(&self, id: u32, change: impl FnOnce(&mut User)) -> Result<User, UserError> {
        self.write(|txn| {
            let before = load(&txn.open_table(USERS)?, id)?.ok_or(UserError::NotFound)?;
            let mut after = before.clone();
            change(&mut after);
            if would_lose_last_admin(txn, &before, Some(&after))? {
                return Err(UserError::LastAdmin);
            }
            put(txn, &after)?;
            Ok(after)
        })
    }

    /// Sets a new password hash and revokes every refresh token of the user, in one transaction.
    pub fn set_password(&self, id: u32, hash: String) -> Result<User, UserError> {
        self.write(|txn| {
            let mut user = load(&txn.open_table(USERS)?, id)?.ok_or(UserError::NotFound)?;
            user.password_hash = Some(hash);
            put(txn, &user)?;
            tokens::revoke_user_in(txn, id)?;
            Ok(user)
        })
    }
}

type UserKeyRange = (Bound<(u32, &'static str)>, Bound<(u32, &'static str)>);

/// Every (user, string) key of one user: a key range of DEVICE_KEYS or DEVICE_TOMBSTONES.
fn keys_of(id: u32) -> UserKeyRange {
    (
        Bound::Included((id, "")),
        id.checked_add(1).map_or(Bound::Unbounded, |next| Bound::Excluded((next, ""))),
    )
}

/// What [`delete_user_in`] removed.
#[derive(Debug)]
pub struct DeletedUser {
    pub user: User,
    /// Ids of the devices deleted with the user (with their usage data).
    pub devices: Vec<u32>,
}

/// Deletes a user with everything that belongs to them: devices with their usage data, device
/// tombstones, team memberships and refresh tokens. Every refusal happens before the first
/// write. While the server runs this must run inside the ingest writer (`Ingest::exec`, which
/// then forgets the devices), so no sync batch for those devices commits after it.
pub fn delete_user_in(txn: &WriteTransaction, id: u32, now: i64) -> Result<DeletedUser, UserError> {
    let user = load(&txn.open_table(USERS)?, id)?.ok_or(UserError::NotFound)?;
    if would_lose_last_admin(txn, &user, None)? {
        return Err(UserError::LastAdmin);
    }
    let devices: Vec<u32> = txn
        .open_table(DEVICE_KEYS)?
        .range::<(u32, &str)>(keys_of(id))?
        .map(|row| row.map(|(_, v)| v.value()))
        .collect::<Result<_, _>>()?;
    for device in &devices {
        devices::delete_in(txn, *device, now)?;
    }
    // Tombstones of this user's keys, the ones just made included: with the user gone they
    // can never be matched again.
    txn.open_table(DEVICE_TOMBSTONES)?
        .extract_from_if::<(u32, &str), _>(keys_of(id), |_, _| true)?
        .for_each(drop);
    teams::remove_user_in(txn, id)?;
    super::day_rollups::delete_user_in(txn, id)?;
    txn.open_table(USERS)?.remove(id)?;
    txn.open_table(USER_NAMES)?.remove(name_key(&user.username).as_str())?;
    txn.open_table(USER_UUIDS)?.remove(user.uuid.as_u128())?;
    if let Some(identity) = &user.oidc_subject {
        txn.open_table(OIDC_IDENTITIES)?.remove(identity.as_str())?;
    }
    tokens::revoke_user_in(txn, id)?;
    super::api_keys::revoke_user_in(txn, id)?;
    super::oauth_clients::revoke_user_in(txn, id)?;
    Ok(DeletedUser { user, devices })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        (dir, s)
    }

    fn new(name: &str, role: Role) -> NewUser {
        NewUser {
            username: name.into(),
            role,
            status: UserStatus::Active,
            password_hash: Some("h".into()),
            oidc_subject: None,
        }
    }

    #[test]
    fn create_lookup_and_uniqueness_ignoring_case() {
        let (_d, s) = store();
        let a = s.create_user(new("Alice", Role::User)).unwrap();
        assert!(matches!(s.create_user(new("alice", Role::User)), Err(UserError::DuplicateName)));
        assert_eq!(s.user_by_name("ALICE").unwrap().unwrap().id, a.id);
        assert_eq!(s.user_by_uuid(a.uuid).unwrap().unwrap().username, "Alice");
        let b = s.create_user(new("bob", Role::User)).unwrap();
        assert!(b.id > a.id);
        s.write(|t| delete_user_in(t, b.id, 0)).unwrap();
        let c = s.create_user(new("carol", Role::User)).unwrap();
        assert!(c.id > b.id, "ids are never reused");
        assert_eq!(s.count_users().unwrap(), 2);
    }

    #[test]
    fn last_admin_is_protected() {
        let (_d, s) = store();
        let root = s.create_user(new("root", Role::Admin)).unwrap();
        assert!(matches!(s.update_user(root.id, |u| u.role = Role::User), Err(UserError::LastAdmin)));
        assert!(matches!(
            s.update_user(root.id, |u| u.status = UserStatus::Disabled),
            Err(UserError::LastAdmin)
        ));
        assert!(matches!(s.write(|t| delete_user_in(t, root.id, 0)), Err(UserError::LastAdmin)));
        let second = s.create_user(new("second", Role::Admin)).unwrap();
        s.update_user(root.id, |u| u.role = Role::User).unwrap();
        assert!(matches!(s.write(|t| delete_user_in(t, second.id, 0)), Err(UserError::LastAdmin)));
    }

    #[test]
    fn deleting_a_user_removes_what_they_own_and_nothing_else() {
        use crate::store::devices::{AuthDevice, delete_in};
        use crate::store::teams::TeamRole;
        let (_d, s) = store();
        let a = s.create_user(new("alice", Role::User)).unwrap();
        let b = s.create_user(new("bob", Role::User)).unwrap();
        let dev = |user: u32, key: &str| match s.auth_device(user, key, "d", 1).unwrap() {
            AuthDevice::Ready(d) => d.id,
            other => panic!("{other:?}"),
        };
        let (a1, a2, b1) = (dev(a.id, "k1"), dev(a.id, "k2"), dev(b.id, "k1"));
        s.write(|t| delete_in(t, a2, 2)).unwrap();
        let team = s.create_team("t", 1).unwrap();
        s.add_team_member(team.id, a.id, TeamRole::Member, 1).unwrap();
        s.add_team_member(team.id, b.id, TeamRole::Member, 1).unwrap();
        let token = crate::store::tokens::RefreshRecord {
            family: 1,
            device_id: None,
            issued_at: 0,
            expires_at: i64::MAX,
            rotated_at: None,
        };
        s.insert_refresh(a.id, [1; 32], &token).unwrap();

        let gone = s.write(|t| delete_user_in(t, a.id, 3)).unwrap();
        assert_eq!(gone.devices, vec![a1]);
        assert!(s.user(a.id).unwrap().is_none() && s.user_by_name("alice").unwrap().is_none());
        assert!(s.device(a1).unwrap().is_none());
        assert!(!s.is_tombstoned(a.id, "k1").unwrap() && !s.is_tombstoned(a.id, "k2").unwrap());
        assert_eq!(s.team_member_ids(team.id).unwrap(), vec![b.id]);
        assert_eq!(s.stats().unwrap().refresh_tokens, 0);
        assert!(s.device(b1).unwrap().is_some(), "another user's device with the same key stays");
        assert!(matches!(s.write(|t| delete_user_in(t, a.id, 4)), Err(UserError::NotFound)));
    }

    #[test]
    fn oidc_identities_are_unique_and_follow_links_and_deletion() {
        let (_d, s) = store();
        let a = s
            .create_user(NewUser {
                oidc_subject: Some(oidc_key("https://idp", "1")),
                ..new("a1", Role::User)
            })
            .unwrap();
        assert_eq!(s.user_by_oidc(&oidc_key("https://idp", "1")).unwrap().unwrap().id, a.id);
        assert!(s.user_by_oidc(&oidc_key("https://other", "1")).unwrap().is_none());
        let taken = NewUser { oidc_subject: Some(oidc_key("https://idp", "1")), ..new("b1", Role::User) };
        assert!(matches!(s.create_user(taken), Err(UserError::IdentityTaken)));
        let b = s.create_user(new("b1", Role::User)).unwrap();
        assert!(matches!(s.link_oidc(b.id, &oidc_key("https://idp", "1")), Err(UserError::IdentityTaken)));
        s.link_oidc(b.id, &oidc_key("https://idp", "2")).unwrap();
        s.link_oidc(b.id, &oidc_key("https://idp", "3")).unwrap();
        assert!(s.user_by_oidc(&oidc_key("https://idp", "2")).unwrap().is_none(), "old link removed");
        assert_eq!(s.user_by_oidc(&oidc_key("https://idp", "3")).unwrap().unwrap().id, b.id);
        s.write(|t| delete_user_in(t, a.id, 0)).unwrap();
        assert!(s.user_by_oidc(&oidc_key("https://idp", "1")).unwrap().is_none(), "deletion unlinks");
        assert_eq!(oidc_subject_of(&oidc_key("https://idp", "x|y")), "x|y");
    }

    #[test]
    fn record_round_trip_and_version_check() {
        let u = User {
            id: 7,
            uuid: Uuid::new_v4(),
            username: "x.y-z_1".into(),
            role: Role::Admin,
            status: UserStatus::Pending,
            password_hash: None,
            oidc_subject: Some("https://idp|123".into()),
            created_at: 1_700_000_000,
        };
        let bytes = u.encode();
        let back = User::decode(&bytes).unwrap();
        assert_eq!(back.uuid, u.uuid);
        assert_eq!(back.oidc_subject, u.oidc_subject);
        let mut newer = bytes.clone();
        newer[0] = 9;
        assert!(User::decode(&newer).unwrap_err().0.contains("newer toki-sync"));
        assert!(User::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
