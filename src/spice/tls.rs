//! TLS for SPICE: the `tls-port` options, the rustls server configuration
//! built from the certificate files, and which channels must (or must
//! not) come over TLS.
//!
//! The options are QEMU's: `tls-port=N` with `x509-dir=DIR` (which holds
//! `server-cert.pem` and `server-key.pem`; QEMU also keeps the CA there as
//! `ca-cert.pem`, which the server does not need: clients are not asked
//! for certificates) or `x509-cert-file=`/`x509-key-file=`;
//! `tls-channel=NAME` makes a channel TLS-only and `plaintext-channel=NAME`
//! plaintext-only (`default` stands for every channel not named). As in
//! libspice, a channel without a rule may use either port, and a link on
//! the wrong port is answered with `NEED_SECURED` (or `NEED_UNSECURED`),
//! which makes clients that know both ports reconnect on the other one.
//! The `unix=` socket (mode 0600, this machine only) serves every channel
//! whatever the rules say. Only TLS 1.2 and 1.3 are offered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::protocol::LinkError;

/// The `--spice` options this module parses.
pub const OPTION_NAMES: &[&str] = &[
    "tls-port",
    "x509-dir",
    "x509-cert-file",
    "x509-key-file",
    "tls-channel",
    "plaintext-channel",
];

/// Channel names as QEMU takes them, with their SPICE channel types.
const CHANNEL_NAMES: &[(&str, u8)] = &[
    ("main", 1),
    ("display", 2),
    ("inputs", 3),
    ("cursor", 4),
    ("playback", 5),
    ("record", 6),
    ("smartcard", 8),
    ("usbredir", 9),
    ("port", 10),
    ("webdav", 11),
];

/// Which ports a channel may be linked on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Security {
    /// Plaintext or TLS.
    #[default]
    Any,
    /// TLS only (`tls-channel=`).
    Tls,
    /// Plaintext only (`plaintext-channel=`).
    Plain,
}

/// The rules `tls-channel=` and `plaintext-channel=` set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPolicy {
    default: Security,
    /// (channel type, rule), at most one per type.
    channels: Vec<(u8, Security)>,
}

impl ChannelPolicy {
    /// The rule for a channel type.
    pub fn of(&self, channel_type: u8) -> Security {
        self.channels
            .iter()
            .find(|(t, _)| *t == channel_type)
            .map_or(self.default, |(_, s)| *s)
    }

    /// Whether a link for `channel_type` may go on over a connection that
    /// is (or is not) TLS; the refusal tells the client to switch.
    pub fn admits(&self, channel_type: u8, tls: bool) -> Result<(), LinkError> {
        match (self.of(channel_type), tls) {
            (Security::Tls, false) => Err(LinkError::NeedSecured),
            (Security::Plain, true) => Err(LinkError::NeedUnsecured),
            _ => Ok(()),
        }
    }

    /// Every channel must use TLS (the plaintext port only redirects).
    pub fn all_secure(&self) -> bool {
        self.default == Security::Tls && self.channels.iter().all(|(_, s)| *s == Security::Tls)
    }

    fn set(&mut self, name: &str, rule: Security, key: &str) -> Result<(), String> {
        if name == "default" {
            self.default = rule;
            return Ok(());
        }
        let Some(&(_, kind)) = CHANNEL_NAMES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = CHANNEL_NAMES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{key}: '{name}' is not a channel (default, {})",
                names.join(", ")
            ));
        };
        self.channels.retain(|(t, _)| *t != kind);
        self.channels.push((kind, rule));
        Ok(())
    }
}

/// What `--spice` says about TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The TLS port (`tls-port=`); none: no TLS listener.
    pub port: Option<u16>,
    dir: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    pub policy: ChannelPolicy,
}

impl TlsOptions {
    /// Takes one of [`OPTION_NAMES`] with its value (one-line errors).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let path = |slot: &mut Option<PathBuf>| {
            if slot.replace(PathBuf::from(value)).is_some() {
                return Err(format!("{key} is given twice"));
            }
            Ok(())
        };
        match key {
            "tls-port" => {
                let port = value.parse::<u16>().ok().filter(|&p| p != 0);
                let port = port.ok_or_else(|| format!("tls-port: '{value}' is not a port"))?;
                if self.port.replace(port).is_some() {
                    return Err("tls-port is given twice".into());
                }
                Ok(())
            }
            "x509-dir" => path(&mut self.dir),
            "x509-cert-file" => path(&mut self.cert),
            "x509-key-file" => path(&mut self.key),
            "tls-channel" => self.policy.set(value, Security::Tls, key),
            "plaintext-channel" => self.policy.set(value, Security::Plain, key),
            _ => Err(format!("{key} is not a TLS option")),
        }
    }

    /// Checks that the options fit together.
    pub fn check(&self) -> Result<(), String> {
        let files = self.dir.is_some() || self.cert.is_some() || self.key.is_some();
        let rules = self.policy != ChannelPolicy::default();
        match self.port {
            None if files || rules => {
                Err("x509-*, tls-channel and plaintext-channel need tls-port=N".into())
            }
            Some(_) if self.files().is_none() => Err(
                "tls-port needs the server's certificate: x509-dir=DIR (with server-cert.pem \
                 and server-key.pem) or x509-cert-file= and x509-key-file="
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The certificate chain and key files.
    fn files(&self) -> Option<(PathBuf, PathBuf)> {
        let in_dir = |name: &str| self.dir.as_ref().map(|d| d.join(name));
        let cert = self.cert.clone().or_else(|| in_dir("server-cert.pem"))?;
        let key = self.key.clone().or_else(|| in_dir("server-key.pem"))?;
        Some((cert, key))
    }

    /// The rustls configuration, from the files (one-line errors); `None`
    /// without `tls-port`.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        if self.port.is_none() {
            return Ok(None);
        }
        let (cert_path, key_path) = self.files().ok_or("tls-port needs x509-dir=DIR")?;
        let unreadable =
            |path: &Path, e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
        let certs = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| unreadable(&cert_path, &e))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", cert_path.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| unreadable(&key_path, &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "{} and {} do not make a usable certificate: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?;
        Ok(Some(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(items: &[(&str, &str)]) -> Result<TlsOptions, String> {
        let mut o = TlsOptions::default();
        for (k, v) in items {
            o.set(k, v)?;
        }
        o.check()?;
        Ok(o)
    }

    #[test]
    fn channel_rules_follow_libspice() {
        let o = options(&[
            ("tls-port", "5931"),
            ("x509-dir", "/x"),
            ("tls-channel", "main"),
            ("plaintext-channel", "cursor"),
        ])
        .unwrap();
        assert_eq!(o.policy.admits(1, false), Err(LinkError::NeedSecured));
        assert_eq!(o.policy.admits(1, true), Ok(()));
        assert_eq!(o.policy.admits(4, true), Err(LinkError::NeedUnsecured));
        assert_eq!(o.policy.admits(2, false), Ok(()));
        assert_eq!(o.policy.admits(2, true), Ok(()));
        assert!(!o.policy.all_secure());
        let o = options(&[
            ("tls-port", "1"),
            ("x509-dir", "/x"),
            ("tls-channel", "default"),
        ]);
        let o = o.unwrap();
        assert!(o.policy.all_secure());
        assert_eq!(o.policy.admits(3, false), Err(LinkError::NeedSecured));
        assert_eq!(
            o.files(),
            Some(("/x/server-cert.pem".into(), "/x/server-key.pem".into()))
        );
    }

    #[test]
    fn bad_options_get_one_line_errors() {
        for (items, needle) in [
            (&[("tls-port", "0")][..], "not a port"),
            (
                &[("tls-port", "5931")][..],
                "needs the server's certificate",
            ),
            (&[("x509-dir", "/x")][..], "need tls-port"),
            (&[("tls-channel", "main")][..], "need tls-port"),
            (
                &[
                    ("tls-port", "1"),
                    ("x509-dir", "/x"),
                    ("tls-channel", "video"),
                ][..],
                "not a channel",
            ),
            (
                &[("tls-port", "1"), ("x509-dir", "/x"), ("x509-dir", "/y")][..],
                "twice",
            ),
        ] {
            let e = options(items).unwrap_err();
            assert!(e.contains(needle), "{items:?}: {e}");
            assert!(!e.contains('\n'));
        }
        let o = options(&[("tls-port", "1"), ("x509-dir", "/nonexistent")]).unwrap();
        let e = o.server_config().unwrap_err();
        assert!(
            e.contains("cannot read /nonexistent/server-cert.pem"),
            "{e}"
        );
    }
}
