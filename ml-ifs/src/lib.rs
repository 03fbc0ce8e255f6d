#![doc = include_str!("../docs.md")]

pub mod approval;
pub mod approval_setup;
pub mod builder;
pub mod buttons;
pub mod error;
pub mod history;
pub mod model;
pub mod odata;
pub mod resource;
pub mod source;

pub use approval::{ApprovalAction, ApprovalOutcome, ApprovalRequest, Approvals, Approver};
pub use approval_setup::ApprovalSettings;
pub use builder::{IfsBuilder, IfsConfigKey};
pub use buttons::ApprovalButtons;
pub use error::{IfsError, parse_error};
pub use history::ChangeDetection;
pub use ml_core::cursor::Paging;
pub use resource::{IfsResource, KeyAttr, KeyType, ResourceSpec};
pub use source::IfsSource;
