use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum K {
    Url,
    Token,
    Size,
}

impl ConfigKey for K {
    const ALL: &'static [Self] = &[K::Url, K::Token, K::Size];
    const PREFIX: &'static str = "T_";
    fn env_name(self) -> &'static str {
        match self {
            K::Url => "T_URL",
            K::Token => "T_TOKEN",
            K::Size => "T_SIZE",
        }
    }
    fn is_secret(self) -> bool {
        matches!(self, K::Token)
    }
}

fn key_of(e: Error) -> String {
    match e {
        Error::Config { key, .. } => key,
        other => panic!("not a config error: {other:?}"),
    }
}

#[test]
fn names_short_and_long_and_unknown_refused() {
    assert_eq!(K::from_name("T_URL"), Some(K::Url));
    assert_eq!(K::from_name("url"), Some(K::Url));
    assert_eq!(K::from_name(" token "), Some(K::Token));
    assert_eq!(K::from_name("URL_T"), None);
    let mut v = ConfigValues::<K>::new();
    let err = v.set_str("T_NOPE", "x").expect_err("unknown");
    assert_eq!(key_of(err), "T_NOPE");
}

#[test]
fn empty_values_are_unset_everywhere() {
    let env = MapEnv::from([("T_URL", "  "), ("T_TOKEN", ""), ("T_SIZE", "3")]);
    let v = ConfigValues::<K>::from_env_with(&env);
    assert!(!v.is_set(K::Url));
    assert!(!v.is_set(K::Token));
    assert_eq!(v.parse::<u32>(K::Size).expect("size"), Some(3));
    let mut v = v;
    v.set(K::Url, "");
    assert_eq!(v.get(K::Url), None);
    assert_eq!(key_of(v.require(K::Url).expect_err("empty")), "T_URL");
}

#[test]
fn typed_getters_name_the_key_and_hide_secrets() {
    let mut v = ConfigValues::<K>::new();
    v.set(K::Size, "many");
    v.set(K::Token, "hunter2");
    let err = v.parse::<u32>(K::Size).expect_err("not a number");
    assert_eq!(key_of(err), "T_SIZE");
    assert!(!format!("{v:?}").contains("hunter2"));
    assert!(format!("{v:?}").contains("T_TOKEN"));
    assert_eq!(v.get(K::Token), None, "a secret is not a plain value");
    assert!(v.secret(K::Token).is_some());
}

#[test]
fn one_url_policy() {
    for ok in [
        "https://example.com/x",
        "http://127.0.0.1:8080/",
        "http://127.0.0.2/",
        "http://[::1]:9/",
        "http://localhost:1/",
        "http://LOCALHOST/",
    ] {
        assert!(check_url("K", ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://example.com/",
        "http://10.0.0.1/",
        "http://127.0.0.1.example.com/",
        "ftp://example.com/",
        "https://u:hunter2@example.com/",
        "https://example.com/?a=1",
        "not a url",
    ] {
        let err = check_url("K", bad).expect_err(bad);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(key_of(err), "K");
    }
}
