//! `${NAME}` interpolation of configuration values from an [`Env`].
//!
//! * `${NAME}`: the variable's value; unset or empty is an error naming the key path
//!   (`sources.oracle.settings.client_secret`) and the variable, never a value.
//! * `${NAME:-default}`: the default when the variable is unset or empty.
//! * `${credential:NAME}`: the credential `NAME` from the encrypted credential store
//!   (see [`crate::credential::CredentialEnv`]); not stored is an error naming the path.
//! * `$$`: a literal `$`.
//!
//! Interpolated values are used once, to configure a connector; the configuration keeps
//! the `${NAME}` form, so a secret is never written back into a file or shown by `Debug`.

use super::Env;
use crate::error::{Error, Result};

/// The prefix of a reference to a stored credential: `${credential:slack.bot_token}`.
pub const CREDENTIAL_PREFIX: &str = "credential:";

/// One `${…}` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reference<'a> {
    name: &'a str,
    default: Option<&'a str>,
}

enum Piece<'a> {
    Text(&'a str),
    Var(Reference<'a>),
}

fn pieces<'a>(path: &str, raw: &'a str) -> Result<Vec<Piece<'a>>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push(Piece::Text(&rest[..i]));
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push(Piece::Text("$"));
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                Error::config(path, "an unterminated `${` (write `$$` for a literal `$`)")
            })?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = if let Some(credential) = name.strip_prefix(CREDENTIAL_PREFIX) {
                crate::credential::CredentialName::new(credential).is_ok()
            } else {
                !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !name.as_bytes()[0].is_ascii_digit()
            };
            if !valid {
                return Err(Error::config(
                    path,
                    format!("`${{{name}}}` is not a valid environment variable name"),
                ));
            }
            out.push(Piece::Var(Reference { name, default }));
            rest = &body[end + 1..];
        } else {
            out.push(Piece::Text("$"));
            rest = after;
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Replaces every `${NAME}` in `raw` by its value in `env`. Errors name `path`.
pub fn interpolate(path: &str, raw: &str, env: &(impl Env + ?Sized)) -> Result<String> {
    let mut out = String::with_capacity(raw.len());
    for p in pieces(path, raw)? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(r) => match (env.var(r.name).filter(|v| !v.trim().is_empty()), r.default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    let what = match r.name.strip_prefix(CREDENTIAL_PREFIX) {
                        Some(c) => format!(
                            "credential `{c}` is not stored (`ml-connector credentials set {c}`)"
                        ),
                        None => format!("environment variable `{}` is not set", r.name),
                    };
                    return Err(Error::config(path, what));
                }
            },
        }
    }
    Ok(out)
}

/// Every variable `raw` refers to, with whether it must be set (it has no default).
pub fn referenced_vars(raw: &str) -> Vec<(String, bool)> {
    pieces("", raw)
        .map(|ps| {
            ps.into_iter()
                .filter_map(|p| match p {
                    Piece::Var(Reference { name, default }) => {
                        Some((name.to_owned(), default.is_none()))
                    }
                    Piece::Text(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The variables `raw` refers to without a default (those that must be set).
pub fn required_vars(raw: &str) -> Vec<String> {
    pieces("", raw)
        .map(|ps| {
            ps.into_iter()
                .filter_map(|p| match p {
                    Piece::Var(Reference {
                        name,
                        default: None,
                    }) => Some(name.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn replaces_defaults_escapes_and_names_the_path() {
        let env = MapEnv::from([("A", "1"), ("EMPTY", " ")]);
        assert_eq!(interpolate("p", "x${A}y", &env).expect("a"), "x1y");
        assert_eq!(interpolate("p", "${B:-dflt}", &env).expect("b"), "dflt");
        assert_eq!(interpolate("p", "${EMPTY:-d}", &env).expect("e"), "d");
        assert_eq!(interpolate("p", "$$5 $x", &env).expect("$"), "$5 $x");
        let err = interpolate("sources.o.settings.secret", "${NOPE}", &env).expect_err("unset");
        let shown = err.to_string();
        assert!(shown.contains("sources.o.settings.secret"), "{shown}");
        assert!(shown.contains("NOPE"), "{shown}");
        assert!(interpolate("p", "${A", &env).is_err());
        assert!(interpolate("p", "${1A}", &env).is_err());
        assert_eq!(required_vars("${A}-${B:-x}-${C}"), vec!["A", "C"]);
        assert_eq!(
            referenced_vars("${A}-${B:-x}"),
            vec![("A".to_owned(), true), ("B".to_owned(), false)]
        );
    }

    #[test]
    fn credential_references_resolve_through_the_env_and_name_the_credential() {
        let env = MapEnv::from([("credential:slack.bot_token", "xoxb-1")]);
        assert_eq!(
            interpolate("p", "${credential:slack.bot_token}", &env).expect("stored"),
            "xoxb-1"
        );
        let err = interpolate(
            "sinks.slack.settings.bot_token",
            "${credential:other}",
            &env,
        )
        .expect_err("not stored")
        .to_string();
        assert!(err.contains("credential `other` is not stored"), "{err}");
        assert!(err.contains("sinks.slack.settings.bot_token"), "{err}");
        assert!(interpolate("p", "${credential:bad name}", &env).is_err());
        assert_eq!(required_vars("${credential:a.b}"), vec!["credential:a.b"]);
    }
}
