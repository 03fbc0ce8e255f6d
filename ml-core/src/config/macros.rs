//! The two pieces every connector builder used to write by hand: its configuration-key
//! enum (with [`ConfigKey`](super::ConfigKey) and `Display`) and the four methods that fill
//! its [`ConfigValues`](super::ConfigValues) (`from_env`, `from_env_with`, `with_config`,
//! `with_config_str`). One definition keeps their behaviour (names, secrets, errors naming
//! the key) the same in every connector.

/// Declares a builder's configuration-key enum: each key with its environment variable,
/// secrets marked `(secret)`. Generates the enum (`Copy`, ordered, `#[non_exhaustive]`),
/// `ALL` (every key, in declaration order), `as_env()`, the
/// [`ConfigKey`](crate::config::ConfigKey) implementation and `Display` (the variable).
///
/// ```
/// ml_core::config_keys! {
///     /// A configuration key of the example builder.
///     pub enum ExampleConfigKey: prefix "EXAMPLE_" {
///         /// `EXAMPLE_URL`: the base URL.
///         Url = "EXAMPLE_URL",
///         /// `EXAMPLE_TOKEN`: the API token.
///         Token = "EXAMPLE_TOKEN" (secret),
///     }
/// }
/// use ml_core::config::ConfigKey;
/// assert_eq!(ExampleConfigKey::from_name("token"), Some(ExampleConfigKey::Token));
/// assert!(ExampleConfigKey::Token.is_secret() && !ExampleConfigKey::Url.is_secret());
/// assert_eq!(ExampleConfigKey::Url.to_string(), "EXAMPLE_URL");
/// ```
#[macro_export]
macro_rules! config_keys {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: prefix $prefix:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $env:literal $(($secret:ident))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every key, in documentation order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )* ];

            /// The environment variable.
            pub fn as_env(self) -> &'static str {
                match self {
                    $( Self::$variant => $env, )*
                }
            }
        }

        impl $crate::config::ConfigKey for $name {
            const ALL: &'static [Self] = $name::ALL;
            const PREFIX: &'static str = $prefix;

            fn env_name(self) -> &'static str {
                self.as_env()
            }

            #[allow(clippy::match_same_arms, clippy::match_like_matches_macro)]
            fn is_secret(self) -> bool {
                match self {
                    $( Self::$variant => $crate::config_keys!(@secret $($secret)?), )*
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_env())
            }
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

/// The four methods that fill a builder's `values: ConfigValues<Key>` field, for an
/// `impl` block of a builder that has `fn new() -> Self` and that field:
/// `from_env()`, `from_env_with(&impl Env)`, `with_config(key, value)` and
/// `with_config_str(name, value)` (an unknown name is an error naming it).
///
/// ```
/// # ml_core::config_keys! {
/// #     /// Keys.
/// #     pub enum ExampleConfigKey: prefix "EXAMPLE_" {
/// #         /// `EXAMPLE_URL`.
/// #         Url = "EXAMPLE_URL",
/// #     }
/// # }
/// use ml_core::config::{ConfigValues, MapEnv};
///
/// /// An example builder.
/// #[derive(Debug, Default)]
/// pub struct ExampleBuilder {
///     values: ConfigValues<ExampleConfigKey>,
/// }
///
/// impl ExampleBuilder {
///     /// An empty builder.
///     pub fn new() -> Self {
///         Self::default()
///     }
///
///     ml_core::config_builder_methods!(ExampleConfigKey, "EXAMPLE_*");
/// }
///
/// let b = ExampleBuilder::from_env_with(&MapEnv::from([("EXAMPLE_URL", "https://x")]));
/// assert!(b.with_config_str("nope", "1").is_err());
/// ```
#[macro_export]
macro_rules! config_builder_methods {
    ($key:ty, $vars:literal) => {
        #[doc = concat!(
                    "A builder from the `", $vars, "` environment variables (unset and empty ones ",
                    "are skipped). Same as `from_env_with(&ProcessEnv)`."
                )]
        pub fn from_env() -> Self {
            Self::from_env_with(&$crate::config::ProcessEnv)
        }

        /// Like [`from_env`](Self::from_env), reading any `ml_core::config::Env` (a map in
        /// tests).
        pub fn from_env_with(env: &impl $crate::config::Env) -> Self {
            Self {
                values: $crate::config::ConfigValues::from_env_with(env),
                ..Self::new()
            }
        }

        /// Sets one configuration value (parsed at `build()`).
        pub fn with_config(mut self, key: $key, value: impl Into<String>) -> Self {
            self.values.set(key, value);
            self
        }

        /// Sets a value by name: the environment variable or its short form without the
        /// prefix, case-insensitive. An unknown name is an error naming it.
        pub fn with_config_str(
            mut self,
            name: &str,
            value: impl Into<String>,
        ) -> $crate::Result<Self> {
            self.values.set_str(name, value)?;
            Ok(self)
        }
    };
}
