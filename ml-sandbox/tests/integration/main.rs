//! Integration tests of ml-sandbox (one binary, to keep link times down).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc, missing_docs)]

mod common;
mod emulator_env;
mod faults;
mod slack_calls_us;
mod slack_oauth;
mod slack_socket;
mod slack_web_api;
