//! What a credential may do. A password or SSO session has every scope its user's role allows;
//! an API key or an OAuth client has the scopes it was created with (a subset of those).

use std::fmt;

use crate::store::users::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    UsageRead,
    DevicesRead,
    DevicesWrite,
    AdminRead,
    AdminWrite,
}

pub const ALL: [Scope; 5] =
    [Scope::UsageRead, Scope::DevicesRead, Scope::DevicesWrite, Scope::AdminRead, Scope::AdminWrite];

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsageRead => "usage:read",
            Scope::DevicesRead => "devices:read",
            Scope::DevicesWrite => "devices:write",
            Scope::AdminRead => "admin:read",
            Scope::AdminWrite => "admin:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        ALL.into_iter().find(|x| x.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn is_admin(self) -> bool {
        matches!(self, Scope::AdminRead | Scope::AdminWrite)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, stored as one byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(pub u8);

impl Scopes {
    /// Every scope `role` may hold.
    pub fn of_role(role: Role) -> Scopes {
        let mut s = Scopes::default();
        for x in ALL {
            if role == Role::Admin || !x.is_admin() {
                s.insert(x);
            }
        }
        s
    }

    pub fn insert(&mut self, s: Scope) {
        self.0 |= s.bit();
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 & 0x1f == 0
    }

    /// The scopes of both sets (a credential never has more than its user's role allows now:
    /// an admin demoted to user loses the admin scopes of the keys they made).
    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// Parses a list of scope names for a credential owned by a user with `role`. An empty
    /// list, an unknown name, or an admin scope for a non-admin is an error (the message says which).
    pub fn parse_for(names: &[String], role: Role) -> Result<Scopes, String> {
        let allowed = Scopes::of_role(role);
        let mut out = Scopes::default();
        for n in names {
            let s = Scope::parse(n.trim()).ok_or_else(|| {
                format!("scopes: unknown scope {n:?}; use any of {}", Scopes(0x1f).names().join(", "))
            })?;
            if !allowed.contains(s) {
                return Err(format!("scopes: {s} is only for admins"));
            }
            out.insert(s);
        }
        if out.is_empty() {
            return Err("scopes: give at least one scope".into());
        }
        Ok(out)
    }

    /// Space-separated, as OAuth 2.0 writes scopes.
    pub fn to_oauth(self) -> String {
        self.names().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_parsing() {
        assert_eq!(Scopes::of_role(Role::User).names(), ["usage:read", "devices:read", "devices:write"]);
        assert_eq!(Scopes::of_role(Role::Admin).names().len(), 5);
        let s = Scopes::parse_for(&["usage:read".into(), "devices:read".into()], Role::User).unwrap();
        assert!(s.contains(Scope::UsageRead) && !s.contains(Scope::DevicesWrite));
        assert!(
            Scopes::parse_for(&["admin:read".into()], Role::User).unwrap_err().contains("only for admins")
        );
        assert!(
            Scopes::parse_for(&["usage:write".into()], Role::Admin).unwrap_err().contains("unknown scope")
        );
        assert!(Scopes::parse_for(&[], Role::Admin).unwrap_err().contains("at least one"));
        assert_eq!(
            Scopes::of_role(Role::Admin).intersect(Scopes::of_role(Role::User)),
            Scopes::of_role(Role::User)
        );
    }
}
