//! Rules for usernames and passwords, shared by the HTTP API and the admin CLI.

pub const USERNAME_LENGTH: &str = "username must be 3-32 characters";
pub const USERNAME_CHARS: &str = "username may only contain letters, digits, '_', '-' and '.'";
pub const PASSWORD_LENGTH: &str = "password must be 8-128 characters";
/// Longest password we even try to verify (passwords are at most 128 characters, 4 bytes each);
/// longer ones are rejected without spending a hash on them.
pub const MAX_PASSWORD_BYTES: usize = 512;

pub fn check_username(name: &str) -> Result<(), &'static str> {
    let n = name.chars().count();
    if !(3..=32).contains(&n) {
        return Err(USERNAME_LENGTH);
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(USERNAME_CHARS);
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(PASSWORD_LENGTH);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("ab").is_err());
        assert!(check_username("abc").is_ok());
        assert!(check_username(&"a".repeat(32)).is_ok());
        assert_eq!(check_username(&"a".repeat(33)), Err(USERNAME_LENGTH));
        assert!(check_username("a.b-c_D9").is_ok());
        assert_eq!(check_username("bad name"), Err(USERNAME_CHARS));
        assert_eq!(check_username("ünï"), Err(USERNAME_CHARS));
        assert_eq!(check_username("a/b"), Err(USERNAME_CHARS));
    }

    #[test]
    fn passwords_count_characters() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"é".repeat(128)).is_ok(), "128 characters, 256 bytes");
        assert!(check_password(&"x".repeat(129)).is_err());
    }
}
