//! OAuth clients (client credentials grant) and the access tokens issued to them. Secrets and
//! tokens are stored as SHA-256. A token's record names its client, and a lookup loads the
//! client too, so revoking a client ends its tokens at once. Tables are created on first use.

use redb::{ReadableTable, TableDefinition, TableError, WriteTransaction};
use uuid::Uuid;

use super::codec::{CodecError, Dec, Enc, Record};
use super::{Store, StoreError};
use crate::auth::scopes::Scopes;

pub type Hash = [u8; 32];

/// client_id -> client record.
pub const OAUTH_CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_clients");
/// (owner user id, client uuid) -> client_id.
pub const USER_OAUTH_CLIENTS: TableDefinition<(u32, u128), &str> = TableDefinition::new("user_oauth_clients");
/// SHA-256 of an access token -> (client_id, expiry in Unix seconds, granted scopes).
pub const CLIENT_TOKENS: TableDefinition<Hash, (&str, i64, u8)> = TableDefinition::new("client_tokens");
/// (expiry, token hash): expired tokens are pruned from the front when tokens are issued.
pub const CLIENT_TOKEN_EXPIRY: TableDefinition<(i64, Hash), ()> = TableDefinition::new("client_token_expiry");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    pub id: Uuid,
    pub client_id: String,
    pub user: u32,
    pub name: String,
    pub scopes: Scopes,
    pub secret_hash: Hash,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Record for OAuthClient {
    const NAME: &'static str = "oauth client";
    const VERSION: u8 = 1;

    fn encode_fields(&self, e: &mut Enc) {
        e.fixed(self.id.as_bytes());
        e.str(&self.client_id);
        e.uvar(u64::from(self.user));
        e.str(&self.name);
        e.u8(self.scopes.0);
        e.fixed(&self.secret_hash);
        e.ivar(self.created_at);
        e.opt_ivar(self.last_used_at);
    }

    fn decode_fields(_version: u8, d: &mut Dec<'_>) -> Result<Self, CodecError> {
        Ok(OAuthClient {
            id: Uuid::from_bytes(d.fixed()?),
            client_id: d.string()?,
            user: d.u32var()?,
            name: d.string()?,
            scopes: Scopes(d.u8()?),
            secret_hash: d.fixed()?,
            created_at: d.ivar()?,
            last_used_at: d.opt_ivar()?,
        })
    }
}

fn missing(e: &TableError) -> bool {
    matches!(e, TableError::TableDoesNotExist(_))
}

/// Removes every client of a user (the user is deleted); their tokens die with them.
pub fn revoke_user_in(txn: &WriteTransaction, user: u32) -> Result<usize, StoreError> {
    let ids: Vec<String> = txn
        .open_table(USER_OAUTH_CLIENTS)?
        .extract_from_if::<(u32, u128), _>((user, 0)..=(user, u128::MAX), |_, _| true)?
        .map(|row| row.map(|(_, v)| v.value().to_owned()))
        .collect::<Result<_, _>>()?;
    let mut clients = txn.open_table(OAUTH_CLIENTS)?;
    for id in &ids {
        clients.remove(id.as_str())?;
    }
    Ok(ids.len())
}

impl Store {
    pub fn insert_oauth_client(&self, c: &OAuthClient) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(OAUTH_CLIENTS)?.insert(c.client_id.as_str(), c.encode().as_slice())?;
            txn.open_table(USER_OAUTH_CLIENTS)?.insert((c.user, c.id.as_u128()), c.client_id.as_str())?;
            Ok(())
        })
    }

    pub fn oauth_client(&self, client_id: &str) -> Result<Option<OAuthClient>, StoreError> {
        let txn = self.read()?;
        let t = match txn.open_table(OAUTH_CLIENTS) {
            Ok(t) => t,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(client_id)?.map(|v| OAuthClient::decode(v.value())).transpose()?)
    }

    pub fn oauth_clients(&self, user: Option<u32>) -> Result<Vec<OAuthClient>, StoreError> {
        let mut clients: Vec<OAuthClient> =
            super::api_keys::list_by_owner(self, USER_OAUTH_CLIENTS, OAUTH_CLIENTS, user)?;
        clients.sort_by_key(|c| (c.user, c.created_at));
        Ok(clients)
    }

    /// Deletes the client with this uuid (`owner`: only among that user's clients).
    pub fn revoke_oauth_client(
        &self,
        id: Uuid,
        owner: Option<u32>,
    ) -> Result<Option<OAuthClient>, StoreError> {
        self.write(|txn| {
            let mut index = txn.open_table(USER_OAUTH_CLIENTS)?;
            let found = match owner {
                Some(u) => index.get((u, id.as_u128()))?.map(|c| (u, c.value().to_owned())),
                None => {
                    let mut hit = None;
                    for row in index.range::<(u32, u128)>(..)? {
                        let (k, c) = row?;
                        if k.value().1 == id.as_u128() {
                            hit = Some((k.value().0, c.value().to_owned()));
                            break;
                        }
                    }
                    hit
                }
            };
            let Some((user, client_id)) = found else { return Ok(None) };
            index.remove((user, id.as_u128()))?;
            let mut clients = txn.open_table(OAUTH_CLIENTS)?;
            let removed =
                clients.remove(client_id.as_str())?.map(|v| OAuthClient::decode(v.value())).transpose()?;
            Ok(removed)
        })
    }

    /// Records an access token for a client (and prunes expired tokens).
    pub fn issue_client_token(
        &self,
        client_id: &str,
        hash: Hash,
        expires: i64,
        now: i64,
        scopes: Scopes,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut tokens = txn.open_table(CLIENT_TOKENS)?;
            let mut expiry = txn.open_table(CLIENT_TOKEN_EXPIRY)?;
            let expired: Vec<Hash> = expiry
                .extract_from_if::<(i64, Hash), _>((i64::MIN, [0; 32])..(now, [0; 32]), |_, _| true)?
                .map(|row| row.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            for h in expired {
                tokens.remove(h)?;
            }
            tokens.insert(hash, (client_id, expires, scopes.0))?;
            expiry.insert((expires, hash), ())?;
            let mut clients = txn.open_table(OAUTH_CLIENTS)?;
            let updated = clients.get(client_id)?.map(|v| OAuthClient::decode(v.value())).transpose()?;
            if let Some(mut c) = updated {
                c.last_used_at = Some(now);
                clients.insert(client_id, c.encode().as_slice())?;
            }
            Ok(())
        })
    }

    /// The live client of an access token, with the token's expiry and granted scopes. A token
    /// of a revoked client is `None`.
    pub fn client_token(&self, hash: Hash) -> Result<Option<(OAuthClient, i64, Scopes)>, StoreError> {
        let txn = self.read()?;
        let (tokens, clients) = match (txn.open_table(CLIENT_TOKENS), txn.open_table(OAUTH_CLIENTS)) {
            (Ok(t), Ok(c)) => (t, c),
            (Err(e), _) | (_, Err(e)) if missing(&e) => return Ok(None),
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let Some(row) = tokens.get(hash)? else { return Ok(None) };
        let (client_id, expires, scopes) = row.value();
        let Some(c) = clients.get(client_id)? else { return Ok(None) };
        Ok(Some((OAuthClient::decode(c.value())?, expires, Scopes(scopes))))
    }
}
