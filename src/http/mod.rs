//! The HTTP side: accept loop, router, handlers, errors.

pub mod audit;
pub mod conn;
pub mod error;
pub mod guard;
pub mod handlers;
pub mod plain;
pub mod ratelimit;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod stream;
