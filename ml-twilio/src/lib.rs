#![doc = include_str!("../docs.md")]

pub mod builder;
pub mod email;
pub mod error;
pub mod phone;
pub mod receiver;
pub mod recipients;
pub mod render;
pub mod segments;
pub mod sendgrid_builder;
pub mod signature;
pub mod sms;

pub use builder::{TwilioBuilder, TwilioConfigKey};
pub use email::SendGridEmailSink;
pub use error::TwilioError;
pub use receiver::{SendGridEventReceiver, TwilioStatusReceiver};
pub use recipients::{RecipientDirectory, Role};
pub use segments::LengthPolicy;
pub use sendgrid_builder::{SendGridBuilder, SendGridConfigKey};
pub use sms::{ReconcileMatch, Sender, TwilioSmsSink};
