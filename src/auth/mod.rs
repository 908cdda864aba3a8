//! Authentication: ACS HMAC request signing for trusted backends, and access tokens for clients.

pub mod hmac;
pub mod keys;
pub mod token;

pub use hmac::{HmacError, HmacVerifier};
pub use keys::{KeyError, KeyRing, SigningKey};
pub use token::{Action, IssuedToken, Scopes, TokenError, TokenIssuer, TokenLifetime, TokenVerifier, VerifiedToken};
