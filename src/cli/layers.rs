//! The layers of a configuration: a TOML file, the environment and the
//! flags, each read into the same structure `C` (every field an `Option`),
//! each over the one before. The defaults are the last resort, applied where
//! a value is read.
//!
//! `C` derives both `serde::Deserialize` (its field names are the file's
//! keys) and `clap::Args` (each `#[arg]` names its flag and its variable).
//! The environment and the flags are parsed by clap and laid over `C` with
//! `update_from_arg_matches`, which sets only the fields they name: so
//! nothing here lists the settings, and precedence is the order of the calls.
//! Every error names its source: the file and key, the variable, or the flag.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Deserializer};

use super::parse_duration;

/// Reads `path` into a layer; an error names the file and the key.
pub(crate) fn read_file<C: for<'de> Deserialize<'de>>(path: &Path) -> Result<C, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_path_to_error::deserialize(toml::Deserializer::new(&text)).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message();
        match key.as_str() {
            "." => format!("{}: {message}", path.display()),
            _ => format!("{}: key `{key}`: {message}", path.display()),
        }
    })
}

/// The arguments of `C` as the flags layer parses them: each variable is
/// shown in the help but not read (the environment is a layer of its own).
pub(crate) fn flags_only(command: Command) -> Command {
    command.mut_args(
        |arg| match arg.get_env().map(|v| v.to_string_lossy().into_owned()) {
            Some(var) => {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [env: {var}]")).env(None)
            }
            None => arg,
        },
    )
}

/// Lays every variable `lookup` knows of, among those `C` declares, over
/// `config`; a bad value gives an error that names the variable.
pub(crate) fn apply_env<C: Args + FromArgMatches>(
    config: &mut C,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let declared = C::augment_args(Command::new("env"));
    let parser = flags_only(C::augment_args(Command::new("env")))
        .no_binary_name(true)
        .disable_help_flag(true);
    for arg in declared.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let var = var.to_string_lossy();
        let Some(value) = read_var(&var, lookup) else {
            continue;
        };
        let secret = arg.is_hide_env_values_set();
        let matches: ArgMatches = parser
            .clone()
            .try_get_matches_from([format!("--{long}={value}")])
            .map_err(|err| env_error(&var, secret, &err))?;
        config
            .update_from_arg_matches(&matches)
            .map_err(|err| env_error(&var, secret, &err))?;
    }
    Ok(())
}

/// `var` from `lookup`; the range regex also under django-sage-streaming's
/// misspelt name, with a warning.
fn read_var(var: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    use sage_stream::settings::vars::{RANGE_REGEX, RANGE_REGEX_MISSPELT};
    let value = lookup(var);
    if var != RANGE_REGEX {
        return value;
    }
    match (value, lookup(RANGE_REGEX_MISSPELT)) {
        (Some(value), misspelt) => {
            if misspelt.is_some() {
                tracing::warn!(
                    "both {RANGE_REGEX} and {RANGE_REGEX_MISSPELT} are set; using {RANGE_REGEX}"
                );
            }
            Some(value)
        }
        (None, Some(value)) => {
            tracing::warn!("{RANGE_REGEX_MISSPELT} is django-sage-streaming's misspelling; accepted, but please name it {RANGE_REGEX}");
            Some(value)
        }
        (None, None) => None,
    }
}

/// clap's reason, under the variable's name; a secret's value is not shown.
fn env_error(var: &str, secret: bool, err: &clap::Error) -> String {
    if secret {
        return format!("{var}: invalid value (not shown: it is secret)");
    }
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    format!("{var}: {}", first.strip_prefix("error: ").unwrap_or(first))
}

/// A secret setting (a token, a key): its `Debug` is `"***"`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A URL that may carry a password (a database, the auth endpoint): its
/// `Debug` hides the password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct SecretUrl(String);

impl SecretUrl {
    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&sage_stream::redact_url(&self.0), f)
    }
}

/// A duration in the file, written as the flags take it (`"30s"`, `"90d"`);
/// a bare integer is seconds, as the old `header_timeout_secs` took.
pub(crate) fn duration_value<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }
    match Option::<Written>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Written::Seconds(seconds)) => Ok(Some(Duration::from_secs(seconds))),
        Some(Written::Text(text)) => parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A table in the file (`[tokens]`, `[stream.mime_types]`) as the pairs the
/// repeatable flag gives, in key order.
pub(crate) fn map_pairs<'de, D, K>(deserializer: D) -> Result<Option<Vec<(K, String)>>, D::Error>
where
    D: Deserializer<'de>,
    K: From<String>,
{
    let table = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
    Ok(Some(
        table
            .into_iter()
            .map(|(key, value)| (K::from(key), value))
            .collect(),
    ))
}

/// A list of texts in the file, each parsed as its flag parses it.
pub(crate) fn parsed_list<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}
