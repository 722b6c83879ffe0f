//! The HTTP side: accept loop, router, handlers, errors.

pub mod body;
pub mod conn;
pub mod error;
pub mod guard;
pub mod handlers;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
