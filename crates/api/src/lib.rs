//! The messages API: list a caller's unread messages with download links, dismiss them, and hand
//! out upload links. One axum router, written against the core store and link signer, so that API
//! Gateway (through Lambda) and the local runner serve the very same routes. It never decides who
//! the caller is: its host tells it ([`Identity`]), from a verified JWT or, locally, from a header.

pub mod config;
pub mod error;
pub mod filename;
pub mod page;
pub mod router;
pub mod upload;

pub use config::ApiConfig;
pub use error::ApiError;
pub use page::{PageConfig, SignIn};
pub use router::{Api, Identity, MAX_BODY_BYTES, ROUTES, router};
