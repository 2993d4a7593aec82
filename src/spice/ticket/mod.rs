//! Ticket (password) authentication: the server's RSA-1024 key and the
//! check of a client's encrypted ticket.
//!
//! Clients encrypt `password + NUL` with RSAES-OAEP (SHA-1, MGF1-SHA-1,
//! empty label) under the public key we send in the link reply, as
//! X.509 SubjectPublicKeyInfo DER (162 bytes for a 1024-bit key). One key
//! pair is generated when the server starts and used for every link. The
//! RSA operations are AWS-LC's, constant-time ([`rsa`]).

mod rsa;

use std::time::SystemTime;

use subtle::ConstantTimeEq;

use self::rsa::Rsa;

/// Length of the DER public key in the link reply (`SPICE_TICKET_PUBKEY_BYTES`).
pub const PUBKEY_LEN: usize = 162;
/// Length of an encrypted ticket (the RSA modulus size).
pub const ENCRYPTED_TICKET_LEN: usize = 128;
/// Longest password a client will send (`SPICE_MAX_PASSWORD_LENGTH`).
pub const MAX_PASSWORD_LEN: usize = 60;

/// How clients are let in.
#[derive(Clone, PartialEq, Eq)]
pub enum TicketPolicy {
    /// The ticket must decrypt to exactly this password.
    Password(String),
    /// Any ticket that decrypts is accepted (`disable-ticketing`).
    Disabled,
}

impl std::fmt::Debug for TicketPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TicketPolicy::Password(_) => f.write_str("Password(..)"),
            TicketPolicy::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Whether a password can be sent by SPICE clients: at most
/// [`MAX_PASSWORD_LEN`] bytes, no NUL (one-line errors).
pub fn check_password(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password: at most {MAX_PASSWORD_LEN} bytes (SPICE clients send no more)"
        ));
    }
    if password.contains('\0') {
        return Err("password: must not contain NUL".into());
    }
    Ok(())
}

/// Who may link now: the policy, and when the password stops letting
/// anyone in (`expire-password`; QMP's `expire_password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tickets {
    pub policy: TicketPolicy,
    pub expires: Option<SystemTime>,
}

impl Tickets {
    pub fn new(policy: TicketPolicy) -> Self {
        Tickets {
            policy,
            expires: None,
        }
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("cannot generate the RSA key: {0}")]
    KeyGeneration(String),
}

/// DER of a SubjectPublicKeyInfo for a 1024-bit RSA key with e = 65537, up
/// to the modulus: SEQUENCE { AlgorithmIdentifier rsaEncryption NULL,
/// BIT STRING { SEQUENCE { INTEGER n (with a leading 0: its top bit is
/// set) ...
const SPKI_PREFIX: [u8; 29] = [
    0x30, 0x81, 0x9f, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    0x05, 0x00, 0x03, 0x81, 0x8d, 0x00, 0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00,
];
/// ... and after it: INTEGER e = 65537 } }.
const SPKI_SUFFIX: [u8; 5] = [0x02, 0x03, 0x01, 0x00, 0x01];

/// The server's key pair and its encoded public half.
pub struct TicketKey {
    private: Rsa,
    public_der: [u8; PUBKEY_LEN],
}

impl TicketKey {
    /// A fresh RSA-1024 key (e = 65537).
    pub fn generate() -> Result<TicketKey, TicketError> {
        let failed = |what: &str| TicketError::KeyGeneration(what.to_string());
        let private = Rsa::generate(1024).ok_or_else(|| failed("AWS-LC refused"))?;
        let modulus = private.modulus().ok_or_else(|| failed("no modulus"))?;
        let der: Vec<u8> = [&SPKI_PREFIX[..], &modulus, &SPKI_SUFFIX].concat();
        let public_der: [u8; PUBKEY_LEN] = der.try_into().map_err(|d: Vec<u8>| {
            failed(&format!(
                "public key is {} bytes, not {PUBKEY_LEN}",
                d.len()
            ))
        })?;
        Ok(TicketKey {
            private,
            public_der,
        })
    }

    /// The SubjectPublicKeyInfo DER sent in every link reply.
    pub fn public_der(&self) -> &[u8; PUBKEY_LEN] {
        &self.public_der
    }

    /// Whether an encrypted ticket lets the client in under `policy`.
    /// A ticket that does not decrypt never does (as in spice-server, even
    /// with ticketing disabled: every real client sends a valid one).
    pub fn check(&self, encrypted: &[u8], policy: &TicketPolicy) -> bool {
        let Some(plain) = self.private.oaep_decrypt(encrypted) else {
            return false;
        };
        match policy {
            TicketPolicy::Disabled => true,
            TicketPolicy::Password(expected) => {
                // The password is everything up to the first NUL.
                let given = plain.split(|&b| b == 0).next().unwrap_or_default();
                let expected = expected.as_bytes();
                given.len() == expected.len() && bool::from(given.ct_eq(expected))
            }
        }
    }
}

/// Encrypts a password the way clients do, under the public key of a link
/// reply (for tests and test clients); empty if the key does not parse.
pub fn encrypt_ticket(public_der: &[u8], password: &str) -> Vec<u8> {
    let mut plain = password.as_bytes().to_vec();
    plain.push(0);
    Rsa::from_public_der(public_der)
        .and_then(|key| key.oaep_encrypt(&plain))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_round_trip_and_der_layout() {
        let key = TicketKey::generate().unwrap();
        let der = key.public_der();
        // SEQUENCE, AlgorithmIdentifier rsaEncryption, BIT STRING, INTEGER n, e=65537.
        assert_eq!(&der[..3], &[0x30, 0x81, 0x9f]);
        assert_eq!(
            &der[3..18],
            &[
                0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
                0x00
            ]
        );
        assert_eq!(&der[157..], &[0x02, 0x03, 0x01, 0x00, 0x01]);

        let public = key.public_der();
        let policy = TicketPolicy::Password("secret".into());
        let ticket = encrypt_ticket(public, "secret");
        assert_eq!(ticket.len(), ENCRYPTED_TICKET_LEN);
        assert!(key.check(&ticket, &policy));
        assert!(!key.check(&encrypt_ticket(public, "wrong"), &policy));
        assert!(!key.check(&encrypt_ticket(public, "secretx"), &policy));
        assert!(!key.check(&encrypt_ticket(public, ""), &policy));
        assert!(key.check(&encrypt_ticket(public, ""), &TicketPolicy::Disabled));
        assert!(key.check(&encrypt_ticket(public, "any"), &TicketPolicy::Disabled));
        // Garbage never decrypts.
        assert!(!key.check(&[0u8; 128], &TicketPolicy::Disabled));
        assert!(!key.check(&[1u8; 5], &TicketPolicy::Disabled));
        assert!(!key.check(&[], &TicketPolicy::Disabled));
        // Another key's ticket does not decrypt.
        let other = TicketKey::generate().unwrap();
        assert!(!key.check(
            &encrypt_ticket(other.public_der(), ""),
            &TicketPolicy::Disabled
        ));
        // A damaged key parses to nothing.
        assert!(encrypt_ticket(&der[..100], "x").is_empty());
    }
}
