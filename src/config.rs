//! lawa's configuration: one value, built at the edge (the CLI) and passed down. The library
//! reads the process environment here and nowhere else.
//!
//! [`Env::from_process`] is a snapshot of what lawa honours: the Hugging Face conventions
//! `huggingface_hub` documents (`HF_HOME`, `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`,
//! `XDG_CACHE_HOME`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_TOKEN_PATH`, `HF_HUB_OFFLINE`,
//! `HF_HUB_DISABLE_IMPLICIT_TOKEN`), `LAWA_HOME` (the results store and the demo), lawa's hub
//! knobs (`LAWA_CACHE_DIR` for kept listings, `LAWA_HUB_RETRIES`, `LAWA_HUB_RETRY_DELAY_MS`,
//! `LAWA_HUB_READ_TIMEOUT_S`), `LAWA_FUSED` (`0`: our GPU kernels off, see [`Fused`]) and the
//! platform's home, data and cache folders. A [`Builder`]
//! turns it and the command line's choices (`--offline`) into a [`Config`]:
//!
//! ```
//! let config = lawa::Config::builder()
//!     .env(lawa::config::Env::from_vars([("HF_HUB_OFFLINE", "1")]))
//!     .home("/tmp/lawa-home")
//!     .build();
//! assert!(config.hub.offline);
//! assert_eq!(config.demo_dir().unwrap(), std::path::Path::new("/tmp/lawa-home/demo"));
//! ```

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kernels::Fused;
use crate::source::hf_cache;
use crate::source::hub::HubOptions;

/// Every environment variable lawa reads.
pub const VARS: &[&str] = &[
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    "LAWA_HOME",
    "LAWA_CACHE_DIR",
    "LAWA_HUB_RETRIES",
    "LAWA_HUB_RETRY_DELAY_MS",
    "LAWA_HUB_READ_TIMEOUT_S",
    "LAWA_FUSED",
];

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no data directory for lawa on this system: set LAWA_HOME")]
    NoHome,
}

/// The variables of [`VARS`] that are set (blank counts as unset), and the platform folders.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<&'static str, OsString>,
    home_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
}

impl Env {
    /// The process's environment: the one place lawa reads it.
    pub fn from_process() -> Self {
        let vars = VARS
            .iter()
            .filter_map(|&k| std::env::var_os(k).map(|v| (k, v)))
            .collect();
        Self::with_vars(vars).platform_dirs(dirs::home_dir(), dirs::data_dir(), dirs::cache_dir())
    }

    /// Given variables (names outside [`VARS`] are ignored) and no platform folders.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let vars = vars
            .into_iter()
            .filter_map(|(k, v)| VARS.iter().find(|&&n| n == k).map(|&n| (n, v.into())))
            .collect();
        Self::with_vars(vars)
    }

    fn with_vars(vars: HashMap<&'static str, OsString>) -> Self {
        let vars = vars
            .into_iter()
            .filter(|(_, v)| !v.to_string_lossy().trim().is_empty())
            .collect();
        Env {
            vars,
            ..Env::default()
        }
    }

    /// The user's home, data (`~/.local/share`) and cache (`~/.cache`) folders.
    pub fn platform_dirs(
        self,
        home: Option<PathBuf>,
        data: Option<PathBuf>,
        cache: Option<PathBuf>,
    ) -> Self {
        Env {
            home_dir: home,
            data_dir: data,
            cache_dir: cache,
            ..self
        }
    }

    fn os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(name).map(OsString::as_os_str)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.os(name)
            .map(|v| v.to_string_lossy().trim().to_string())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text(name)?.parse().ok()
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.os(name).map(PathBuf::from)
    }
}

/// What the engine is told instead of reading the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The hub, the Hugging Face cache, the token, offline mode and the retry policy.
    pub hub: HubOptions,
    /// lawa's data folder (`$LAWA_HOME`, else the platform data folder's `lawa`).
    home: Option<PathBuf>,
    /// Whether our GPU kernels may run (`LAWA_FUSED=0`: off); passed to the engines with the
    /// device.
    pub fused: Fused,
}

impl Default for Config {
    /// No environment: the public hub, online, and no lawa home.
    fn default() -> Self {
        Builder::default().build()
    }
}

impl Config {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// lawa's data folder, where the results store is kept.
    pub fn home(&self) -> Result<&Path, ConfigError> {
        self.home.as_deref().ok_or(ConfigError::NoHome)
    }

    /// Where `lawa demo` trains by default: `HOME/demo`.
    pub fn demo_dir(&self) -> Result<PathBuf, ConfigError> {
        Ok(self.home()?.join("demo"))
    }
}

/// Builds a [`Config`]: from an [`Env`], then the caller's own choices on top.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    env: Env,
    offline: bool,
    home: Option<PathBuf>,
}

impl Builder {
    /// Take what the environment says (without one, nothing is read).
    #[must_use]
    pub fn env(self, env: Env) -> Self {
        Builder { env, ..self }
    }

    /// Work from the Hugging Face cache only (`--offline`); `HF_HUB_OFFLINE` turns it on too.
    #[must_use]
    pub fn offline(self, on: bool) -> Self {
        Builder {
            offline: on,
            ..self
        }
    }

    /// lawa's data folder, instead of `LAWA_HOME` or the platform's.
    #[must_use]
    pub fn home(self, dir: impl Into<PathBuf>) -> Self {
        Builder {
            home: Some(dir.into()),
            ..self
        }
    }

    pub fn build(self) -> Config {
        let env = &self.env;
        let home = self
            .home
            .or_else(|| env.path("LAWA_HOME"))
            .or_else(|| env.data_dir.as_ref().map(|d| d.join("lawa")));
        Config {
            hub: hub_options(env, self.offline),
            home,
            fused: Fused::from_env_value(env.text("LAWA_FUSED").as_deref()),
        }
    }
}

/// The hub options `env` implies, as `huggingface_hub` resolves them.
fn hub_options(env: &Env, offline: bool) -> HubOptions {
    let endpoint = env
        .text("HF_ENDPOINT")
        .unwrap_or_else(|| "https://huggingface.co".to_string())
        .trim_end_matches('/')
        .to_string();
    let offline = offline
        || env.text("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
        });
    let cache_dir = hf_cache::cache_dir_from(
        env.os("HF_HUB_CACHE")
            .or_else(|| env.os("HUGGINGFACE_HUB_CACHE"))
            .map(OsStr::to_os_string),
        env.os("HF_HOME").map(OsStr::to_os_string),
        env.os("XDG_CACHE_HOME").map(OsStr::to_os_string),
        env.home_dir.clone(),
    );
    let listing_dir = env
        .path("LAWA_CACHE_DIR")
        .or_else(|| env.cache_dir.as_ref().map(|d| d.join("lawa")))
        .map(|d| d.join("hub-listings"));
    HubOptions {
        endpoint,
        cache_dir,
        token: token(env),
        offline,
        retries: env.number("LAWA_HUB_RETRIES").unwrap_or(5),
        retry_delay: Duration::from_millis(env.number("LAWA_HUB_RETRY_DELAY_MS").unwrap_or(1000)),
        listing_dir,
        read_timeout: Duration::from_secs(env.number("LAWA_HUB_READ_TIMEOUT_S").unwrap_or(60)),
    }
}

/// `HF_HOME`, else `XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home(env: &Env) -> PathBuf {
    // The hub cache without its overrides is `HF_HOME/hub`, resolved the same way.
    let hub = hf_cache::cache_dir_from(
        None,
        env.os("HF_HOME").map(OsStr::to_os_string),
        env.os("XDG_CACHE_HOME").map(OsStr::to_os_string),
        env.home_dir.clone(),
    );
    hub.parent().map(Path::to_path_buf).unwrap_or(hub)
}

/// The token `huggingface_hub` would use: `HF_TOKEN`, else the file at `HF_TOKEN_PATH`, else
/// `HF_HOME/token` (written by `huggingface-cli login`); none if
/// `HF_HUB_DISABLE_IMPLICIT_TOKEN` is set.
fn token(env: &Env) -> Option<String> {
    if env.os("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some() {
        return None;
    }
    if let Some(t) = env.text("HF_TOKEN") {
        return Some(t);
    }
    let file = env
        .path("HF_TOKEN_PATH")
        .unwrap_or_else(|| hf_home(env).join("token"));
    std::fs::read_to_string(file)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::builder()
            .env(Env::from_vars(vars.iter().copied()).platform_dirs(
                Some("/home/u".into()),
                Some("/home/u/.local/share".into()),
                Some("/home/u/.cache".into()),
            ))
            .build()
    }

    #[test]
    fn defaults_follow_the_platform_folders() {
        let c = config(&[]);
        assert_eq!(c.hub.endpoint, "https://huggingface.co");
        assert_eq!(c.hub.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
        assert_eq!(
            c.hub.listing_dir.as_deref(),
            Some(Path::new("/home/u/.cache/lawa/hub-listings"))
        );
        assert!(!c.hub.offline);
        assert_eq!(
            (c.hub.retries, c.hub.retry_delay),
            (5, Duration::from_secs(1))
        );
        assert_eq!(c.home().unwrap(), Path::new("/home/u/.local/share/lawa"));
        assert_eq!(
            Config::default().home().unwrap_err().to_string(),
            "no data directory for lawa on this system: set LAWA_HOME"
        );
    }

    #[test]
    fn variables_override_and_blank_ones_are_unset() {
        let c = config(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HOME", "~/hf"),
            ("HF_TOKEN", " hf_abc \n"),
            ("LAWA_HOME", "/data/lawa"),
            ("LAWA_HUB_RETRY_DELAY_MS", "5"),
            ("HF_HUB_CACHE", "  "),
            ("PATH", "/bin"),
        ]);
        assert_eq!(c.hub.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.hub.cache_dir, Path::new("/home/u/hf/hub"));
        assert_eq!(c.hub.token.as_deref(), Some("hf_abc"));
        assert_eq!(c.hub.retry_delay, Duration::from_millis(5));
        assert_eq!(c.demo_dir().unwrap(), Path::new("/data/lawa/demo"));
        let c = config(&[("HUGGINGFACE_HUB_CACHE", "/c"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(c.hub.cache_dir, Path::new("/c"));
        assert_eq!(
            hf_home(&c_env(&[("XDG_CACHE_HOME", "/x")])),
            Path::new("/x/huggingface")
        );
    }

    fn c_env(vars: &[(&str, &str)]) -> Env {
        Env::from_vars(vars.iter().copied())
    }

    #[test]
    fn offline_from_the_flag_or_hf_hub_offline() {
        for (v, on) in [
            ("1", true),
            ("yes", true),
            ("ON", true),
            ("0", false),
            ("no", false),
        ] {
            assert_eq!(config(&[("HF_HUB_OFFLINE", v)]).hub.offline, on, "{v}");
        }
        let forced = Config::builder()
            .env(c_env(&[("HF_HUB_OFFLINE", "0")]))
            .offline(true)
            .build();
        assert!(forced.hub.offline);
    }

    #[test]
    fn the_token_comes_from_a_file_unless_disabled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        assert_eq!(
            config(&[("HF_HOME", home)]).hub.token.as_deref(),
            Some("hf_file")
        );
        let t = dir.path().join("token");
        let path = t.to_str().unwrap();
        assert_eq!(
            config(&[("HF_TOKEN_PATH", path)]).hub.token.as_deref(),
            Some("hf_file")
        );
        let off = config(&[
            ("HF_HOME", home),
            ("HF_TOKEN", "hf_x"),
            ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1"),
        ]);
        assert_eq!(off.hub.token, None);
    }
}
