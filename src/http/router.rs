//! Turns (method, path) into an [`Endpoint`]. Unknown paths are 404, known paths with another
//! method are 405 with an `Allow` header. HEAD is served as GET (hyper leaves out the body).

use hyper::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Login,
    Register,
    TokenRefresh,
    AuthMethod,
    AuthInfo,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed(&'static str),
}

/// Picks the endpoint for `method` among those a path offers.
fn pick(method: &Method, allow: &'static str, options: Vec<(Method, Endpoint)>) -> Result<Endpoint, RouteError> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    options
        .into_iter()
        .find(|(m, _)| m == method)
        .map(|(_, e)| e)
        .ok_or(RouteError::MethodNotAllowed(allow))
}

pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
    use Endpoint as E;
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let get = Method::GET;
    let post = Method::POST;
    match segments.as_slice() {
        ["health"] => pick(method, "GET, HEAD", vec![(get, E::Health)]),
        ["login"] => pick(method, "POST", vec![(post, E::Login)]),
        ["register"] => pick(method, "POST", vec![(post, E::Register)]),
        ["token", "refresh"] => pick(method, "POST", vec![(post, E::TokenRefresh)]),
        ["auth-method"] => pick(method, "POST", vec![(post, E::AuthMethod)]),
        ["auth", "info"] => pick(method, "GET, HEAD", vec![(get, E::AuthInfo)]),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/health"), Ok(Endpoint::Health));
        assert_eq!(route(&Method::HEAD, "/health"), Ok(Endpoint::Health));
        assert_eq!(route(&Method::GET, "/health/"), Ok(Endpoint::Health));
        assert_eq!(route(&Method::POST, "/health"), Err(RouteError::MethodNotAllowed("GET, HEAD")));
        assert_eq!(route(&Method::GET, "/login"), Err(RouteError::MethodNotAllowed("POST")));
        assert_eq!(route(&Method::GET, "/nope"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::GET, "//health"), Err(RouteError::NotFound));
        assert_eq!(route(&Method::POST, "/token/refresh"), Ok(Endpoint::TokenRefresh));
    }
}
