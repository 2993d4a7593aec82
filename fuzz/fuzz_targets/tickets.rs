//! Ticket handling from a hostile client: any bytes as the encrypted
//! ticket (decrypted by AWS-LC with the server's key, under both
//! policies), and any bytes as a public key for the client side's
//! encryption. Nothing may panic; only a real encryption of the password
//! lets a client in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::spice::ticket::{encrypt_ticket, TicketKey, TicketPolicy};

thread_local! {
    static KEY: TicketKey = TicketKey::generate().unwrap();
}

fuzz_target!(|data: &[u8]| KEY.with(|key| {
    let password = TicketPolicy::Password("fuzz-secret".into());
    assert!(
        !key.check(data, &password),
        "random bytes passed as the password's ticket"
    );
    let _ = key.check(data, &TicketPolicy::Disabled);
    let _ = encrypt_ticket(data, "x");
    if let Some((der, rest)) = data.split_first_chunk::<162>() {
        let _ = encrypt_ticket(der, &String::from_utf8_lossy(rest));
    }
}));
