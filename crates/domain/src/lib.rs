//! Pure types and rules of Strongroom. No I/O, no async, no clock: time is a parameter.

pub mod account;
pub mod email;
pub mod fees;
pub mod ids;
pub mod money;
pub mod pan;
pub mod password;
pub mod payment;
pub mod reconcile;
pub mod secret;

pub use account::{AccountNumber, PostalCode};
pub use email::EmailAddress;
pub use money::{Currency, Money, MoneyError};
pub use payment::{PaymentStatus, TransitionError};
pub use secret::Secret;
