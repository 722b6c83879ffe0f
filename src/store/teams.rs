//! Teams and their members. Members are kept twice, (team, user) and (user, team), so both "who
//! is in this team" (team usage scopes) and "which teams is this user in" are one key range.

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::codec::{CodecError, Dec, Enc, Record};
use super::schema::{
    META_NEXT_TEAM_ID, TEAM_MEMBERS, TEAM_NAMES, TEAM_UUIDS, TEAMS, USER_TEAMS, USERS, next_id,
};
use super::{Store, StoreError};

pub const MAX_NAME_CHARS: usize = 64;
pub const NAME_RULE: &str = "team name must be 1-64 characters without control characters";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub id: u32,
    pub uuid: Uuid,
    pub name: String,
    pub created_at: i64,
}

impl Record for Team {
    const NAME: &'static str = "team";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.uvar(u64::from(self.id));
        e.fixed(self.uuid.as_bytes());
        e.str(&self.name);
        e.ivar(self.created_at);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(Team {
            id: d.u32var()?,
            uuid: Uuid::from_bytes(d.fixed()?),
            name: d.string()?,
            created_at: d.ivar()?,
        })
    }
}

/// A member's role inside a team. It is shown (`/me/teams`) and kept for team-level permissions;
/// server-wide rights come from the account role alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeamRole {
    Member,
    Admin,
}

impl TeamRole {
    pub const NAMES: &'static str = "\"member\" or \"admin\"";

    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Member => "member",
            TeamRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<TeamRole> {
        match s {
            "member" => Some(TeamRole::Member),
            "admin" => Some(TeamRole::Admin),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub role: TeamRole,
    pub added_at: i64,
}

impl Record for Membership {
    const NAME: &'static str = "team membership";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.u8(match self.role {
            TeamRole::Member => 0,
            TeamRole::Admin => 1,
        });
        e.ivar(self.added_at);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        let role = match d.u8()? {
            0 => TeamRole::Member,
            1 => TeamRole::Admin,
            b => return Err(CodecError(format!("unknown team role {b}"))),
        };
        Ok(Membership { role, added_at: d.ivar()? })
    }
}

#[derive(Debug)]
pub enum TeamError {
    NotFound,
    DuplicateName,
    UserNotFound,
    AlreadyMember,
    NotMember,
    Store(StoreError),
}

super::outcome_wraps_store_error!(TeamError);

impl std::fmt::Display for TeamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TeamError::NotFound => f.write_str("team not found"),
            TeamError::DuplicateName => f.write_str("team name already exists"),
            TeamError::UserNotFound => f.write_str("user not found"),
            TeamError::AlreadyMember => f.write_str("user is already a member of this team"),
            TeamError::NotMember => f.write_str("user is not a member of this team"),
            TeamError::Store(e) => e.fmt(f),
        }
    }
}

/// The stored form of a team name: trimmed, 1-64 characters, no control characters.
pub fn clean_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(NAME_RULE);
    }
    Ok(name.to_owned())
}

fn name_key(name: &str) -> String {
    name.to_lowercase()
}

fn load(table: &impl ReadableTable<u32, &'static [u8]>, id: u32) -> Result<Option<Team>, StoreError> {
    Ok(table.get(id)?.map(|v| Team::decode(v.value())).transpose()?)
}

/// Removes a user from every team (user deletion).
pub fn remove_user_in(txn: &WriteTransaction, user: u32) -> Result<usize, StoreError> {
    let teams: Vec<u32> = txn
        .open_table(USER_TEAMS)?
        .extract_from_if::<(u32, u32), _>((user, 0)..=(user, u32::MAX), |_, _| true)?
        .map(|row| row.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    let mut members = txn.open_table(TEAM_MEMBERS)?;
    for team in &teams {
        members.remove((*team, user))?;
    }
    Ok(teams.len())
}

impl Store {
    /// Creates a team; `name` must already be [`clean_name`]d.
    pub fn create_team(&self, name: &str, now: i64) -> Result<Team, TeamError> {
        self.write(|txn| {
            let key = name_key(name);
            let mut names = txn.open_table(TEAM_NAMES)?;
            if names.get(key.as_str())?.is_some() {
                return Err(TeamError::DuplicateName);
            }
            let team = Team {
                id: next_id(txn, META_NEXT_TEAM_ID, 1)?,
                uuid: Uuid::new_v4(),
                name: name.to_owned(),
                created_at: now,
            };
            names.insert(key.as_str(), team.id)?;
            txn.open_table(TEAM_UUIDS)?.insert(team.uuid.as_u128(), team.id)?;
            txn.open_table(TEAMS)?.insert(team.id, team.encode().as_slice())?;
            Ok(team)
        })
    }

    pub fn team_by_uuid(&self, uuid: Uuid) -> Result<Option<Team>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(TEAM_UUIDS)?.get(uuid.as_u128())?.map(|v| v.value()) else {
            return Ok(None);
        };
        load(&txn.open_table(TEAMS)?, id)
    }

    pub fn team_by_name(&self, name: &str) -> Result<Option<Team>, StoreError> {
        let txn = self.read()?;
        let Some(id) = txn.open_table(TEAM_NAMES)?.get(name_key(name.trim()).as_str())?.map(|v| v.value())
        else {
            return Ok(None);
        };
        load(&txn.open_table(TEAMS)?, id)
    }

    /// All teams with their member counts, by id (creation order).
    pub fn teams(&self) -> Result<Vec<(Team, u64)>, StoreError> {
        let txn = self.read()?;
        let members = txn.open_table(TEAM_MEMBERS)?;
        let mut out = Vec::new();
        for row in txn.open_table(TEAMS)?.iter()? {
            let (_, v) = row?;
            let team = Team::decode(v.value())?;
            let count = members.range((team.id, 0)..=(team.id, u32::MAX))?.count() as u64;
            out.push((team, count));
        }
        Ok(out)
    }

    /// Deletes a team and its memberships (the members' accounts stay).
    pub fn delete_team(&self, id: u32) -> Result<Team, TeamError> {
        self.write(|txn| {
            let team = load(&txn.open_table(TEAMS)?, id)?.ok_or(TeamError::NotFound)?;
            let users: Vec<u32> = txn
                .open_table(TEAM_MEMBERS)?
                .extract_from_if::<(u32, u32), _>((id, 0)..=(id, u32::MAX), |_, _| true)?
                .map(|row| row.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            let mut by_user = txn.open_table(USER_TEAMS)?;
            for user in users {
                by_user.remove((user, id))?;
            }
            txn.open_table(TEAMS)?.remove(id)?;
            txn.open_table(TEAM_NAMES)?.remove(name_key(&team.name).as_str())?;
            txn.open_table(TEAM_UUIDS)?.remove(team.uuid.as_u128())?;
            Ok(team)
        })
    }

    pub fn add_team_member(
        &self,
        team: u32,
        user: u32,
        role: TeamRole,
        now: i64,
    ) -> Result<Membership, TeamError> {
        self.write(|txn| {
            if txn.open_table(TEAMS)?.get(team)?.is_none() {
                return Err(TeamError::NotFound);
            }
            if txn.open_table(USERS)?.get(user)?.is_none() {
                return Err(TeamError::UserNotFound);
            }
            let mut members = txn.open_table(TEAM_MEMBERS)?;
            if members.get((team, user))?.is_some() {
                return Err(TeamError::AlreadyMember);
            }
            let m = Membership { role, added_at: now };
            members.insert((team, user), m.encode().as_slice())?;
            txn.open_table(USER_TEAMS)?.insert((user, team), ())?;
            Ok(m)
        })
    }

    pub fn remove_team_member(&self, team: u32, user: u32) -> Result<(), TeamError> {
        self.write(|txn| {
            if txn.open_table(TEAMS)?.get(team)?.is_none() {
                return Err(TeamError::NotFound);
            }
            if txn.open_table(TEAM_MEMBERS)?.remove((team, user))?.is_none() {
                return Err(TeamError::NotMember);
            }
            txn.open_table(USER_TEAMS)?.remove((user, team))?;
            Ok(())
        })
    }

    /// A team's members: (user id, membership), by user id.
    pub fn team_members(&self, team: u32) -> Result<Vec<(u32, Membership)>, StoreError> {
        let txn = self.read()?;
        let mut out = Vec::new();
        for row in txn.open_table(TEAM_MEMBERS)?.range((team, 0)..=(team, u32::MAX))? {
            let (k, v) = row?;
            out.push((k.value().1, Membership::decode(v.value())?));
        }
        Ok(out)
    }

    /// The user ids of a team's members (team usage scopes).
    pub fn team_member_ids(&self, team: u32) -> Result<Vec<u32>, StoreError> {
        Ok(self.team_members(team)?.into_iter().map(|(user, _)| user).collect())
    }

    /// The teams a user belongs to, with their membership.
    pub fn user_teams(&self, user: u32) -> Result<Vec<(Team, Membership)>, StoreError> {
        let txn = self.read()?;
        let teams = txn.open_table(TEAMS)?;
        let members = txn.open_table(TEAM_MEMBERS)?;
        let mut out = Vec::new();
        for row in txn.open_table(USER_TEAMS)?.range((user, 0)..=(user, u32::MAX))? {
            let (k, _) = row?;
            let team_id = k.value().1;
            let (Some(team), Some(m)) = (load(&teams, team_id)?, members.get((team_id, user))?) else {
                return Err(StoreError::Corrupt(format!(
                    "team membership ({team_id}, {user}) has no team or member record"
                )));
            };
            out.push((team, Membership::decode(m.value())?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users::{NewUser, Role, UserStatus};

    #[test]
    fn teams_members_and_both_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let user = |name: &str| {
            s.create_user(NewUser {
                username: name.into(),
                role: Role::User,
                status: UserStatus::Active,
                password_hash: None,
                oidc_subject: None,
            })
            .unwrap()
            .id
        };
        let (a, b) = (user("alice"), user("bob"));
        let eng = s.create_team("Engineering", 1).unwrap();
        assert!(matches!(s.create_team("engineering", 1), Err(TeamError::DuplicateName)));
        let ops = s.create_team("ops", 1).unwrap();
        s.add_team_member(eng.id, a, TeamRole::Admin, 2).unwrap();
        s.add_team_member(eng.id, b, TeamRole::Member, 2).unwrap();
        s.add_team_member(ops.id, a, TeamRole::Member, 2).unwrap();
        assert!(matches!(s.add_team_member(eng.id, a, TeamRole::Member, 3), Err(TeamError::AlreadyMember)));
        assert!(matches!(s.add_team_member(eng.id, 999, TeamRole::Member, 3), Err(TeamError::UserNotFound)));
        assert!(matches!(s.add_team_member(999, a, TeamRole::Member, 3), Err(TeamError::NotFound)));
        assert_eq!(s.team_member_ids(eng.id).unwrap(), vec![a, b]);
        let mine: Vec<(String, TeamRole)> =
            s.user_teams(a).unwrap().into_iter().map(|(t, m)| (t.name, m.role)).collect();
        assert_eq!(mine, vec![("Engineering".into(), TeamRole::Admin), ("ops".into(), TeamRole::Member)]);
        assert_eq!(s.teams().unwrap().iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![2, 1]);

        s.remove_team_member(eng.id, b).unwrap();
        assert!(matches!(s.remove_team_member(eng.id, b), Err(TeamError::NotMember)));
        assert!(s.user_teams(b).unwrap().is_empty());
        s.write(|t| remove_user_in(t, a)).unwrap();
        assert!(s.team_member_ids(ops.id).unwrap().is_empty());
        s.add_team_member(ops.id, b, TeamRole::Member, 4).unwrap();
        s.delete_team(ops.id).unwrap();
        assert!(s.user_teams(b).unwrap().is_empty(), "deleting a team removes the reverse index too");
        assert!(s.team_by_uuid(ops.uuid).unwrap().is_none());
        assert_eq!(s.team_by_name(" ENGINEERING ").unwrap().unwrap().id, eng.id);
        assert_eq!(clean_name("  x  "), Ok("x".into()));
        assert!(
            clean_name("").is_err() && clean_name(&"t".repeat(65)).is_err() && clean_name("a\u{7}b").is_err()
        );
    }
}
