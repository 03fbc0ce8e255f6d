//! Slack ids as newtypes.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id_type!(
    /// A conversation id (`C…` public, `G…` private/group, `D…` direct message).
    ChannelId
);
id_type!(
    /// A message timestamp (`1503435956.000247`): with the channel, the message's id. Kept
    /// as the exact string Slack gave (never a float).
    Ts
);
id_type!(
    /// A workspace (team) id (`T…`).
    TeamId
);
id_type!(
    /// A user id (`U…` / `W…`).
    UserId
);

impl ChannelId {
    /// Whether `address` looks like a conversation id rather than a name: `C`, `G` or `D`
    /// followed by at least six upper-case letters or digits.
    pub fn looks_like_id(address: &str) -> bool {
        let b = address.as_bytes();
        b.len() >= 7
            && matches!(b[0], b'C' | b'G' | b'D')
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    }
}

/// A channel name as Slack stores it: without the leading `#`, lower case, trimmed.
pub fn normalize_channel_name(address: &str) -> String {
    address.trim().trim_start_matches('#').to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert!(ChannelId::looks_like_id("C0123ABCD"));
        assert!(ChannelId::looks_like_id("G8PSS9T3V"));
        assert!(!ChannelId::looks_like_id("#finance"));
        assert!(!ChannelId::looks_like_id("general"));
        assert!(!ChannelId::looks_like_id("Cab"));
        assert_eq!(normalize_channel_name(" #Finance "), "finance");
        assert_eq!(Ts::from("1.2").to_string(), "1.2");
        assert_eq!(
            serde_json::to_string(&ChannelId::from("C1")).expect("json"),
            "\"C1\""
        );
    }
}
