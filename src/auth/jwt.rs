//! HS256 access and refresh tokens.
//!
//! Expiry is checked here rather than by the library so that an expired token whose only problem
//! is its age can be told apart from a forged or mistyped one: the sync protocol puts `expired`
//! in its refusal only in the first case, because the client then refreshes and retries at once.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Tokens longer than this are rejected before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Access,
    Refresh,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User UUID.
    pub sub: String,
    /// Unique token id.
    pub jti: String,
    /// `access` or `refresh`.
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
    /// Refresh tokens: the family (one per login or device grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<u64>,
    /// Refresh tokens: the device the client named at login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// Both kinds, for tokens the device flow issued: the UUID of the device it registered. Such
    /// a token is good only while that device exists, and on the sync port only with its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Valid signature and type, but past `exp`; carries the subject so the caller can tell
    /// whether a fresh token for that user would be accepted.
    Expired { sub: String },
    /// A valid token of the other type (a refresh token used as an access token, or back).
    WrongType,
    /// Not a token we signed, or malformed.
    Invalid,
}

pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Jwt {
    pub fn new(secret: &[u8]) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of serialisable claims cannot fail")
    }

    #[allow(clippy::too_many_arguments)]
    pub fn claims(
        typ: TokenType,
        sub: String,
        now: i64,
        ttl: u64,
        fam: Option<u64>,
        did: Option<String>,
    ) -> Claims {
        Claims {
            sub,
            jti: super::random::token::<16>(),
            typ: typ.as_str().to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            fam,
            did,
            dev: None,
        }
    }

    pub fn verify(&self, token: &str, expected: TokenType, now: i64) -> Result<Claims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        if claims.typ != expected.as_str() {
            return Err(TokenError::WrongType);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired { sub: claims.sub });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_failure_are_distinguished() {
        let jwt = Jwt::new(b"0123456789abcdef0123456789abcdef");
        let now = 1_800_000_000;
        let access = jwt.sign(&Jwt::claims(TokenType::Access, "u".into(), now, 60, None, None));
        let refresh =
            jwt.sign(&Jwt::claims(TokenType::Refresh, "u".into(), now, 600, Some(7), Some("d".into())));
        assert_eq!(jwt.verify(&access, TokenType::Access, now).unwrap().sub, "u");
        assert_eq!(
            jwt.verify(&access, TokenType::Access, now + 60).unwrap_err(),
            TokenError::Expired { sub: "u".into() }
        );
        assert_eq!(jwt.verify(&refresh, TokenType::Access, now).unwrap_err(), TokenError::WrongType);
        let r = jwt.verify(&refresh, TokenType::Refresh, now).unwrap();
        assert_eq!((r.fam, r.did.as_deref()), (Some(7), Some("d")));
        let other = Jwt::new(b"another secret that is long enough!!");
        assert_eq!(other.verify(&access, TokenType::Access, now).unwrap_err(), TokenError::Invalid);
        assert_eq!(jwt.verify("garbage", TokenType::Access, now).unwrap_err(), TokenError::Invalid);
        assert_eq!(jwt.verify(&"a".repeat(9000), TokenType::Access, now).unwrap_err(), TokenError::Invalid);
        // Signature stripped / alg none.
        let parts: Vec<&str> = access.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert_eq!(jwt.verify(&none, TokenType::Access, now).unwrap_err(), TokenError::Invalid);
    }
}
