//! The one RSA key SPICE tickets need, through AWS-LC (the library rustls
//! already uses): constant-time arithmetic with blinding and a
//! constant-time OAEP check, so that a client cannot learn the key from how
//! long a bad ticket takes to refuse (the Marvin attack, which the `rsa`
//! crate is open to). aws-lc-rs's safe API refuses keys under 2048 bits,
//! and the SPICE link reply has room for a 1024-bit one only, so this
//! calls AWS-LC's C functions directly; all of the unsafe code is here.

use std::ptr::NonNull;

use aws_lc_sys as lc;

/// `RSA_private_decrypt` and `RSA_public_encrypt`: length, input, output,
/// key, padding; the bytes written or -1.
type Operation = unsafe extern "C" fn(
    usize,
    *const u8,
    *mut u8,
    *mut lc::RSA,
    std::os::raw::c_int,
) -> std::os::raw::c_int;

/// An RSA key owned by AWS-LC.
pub struct Rsa(NonNull<lc::RSA>);

// SAFETY: an AWS-LC `RSA` may be used from any thread; the operations used
// here only read it (blinding state is guarded by the library's own lock).
unsafe impl Send for Rsa {}

impl Drop for Rsa {
    fn drop(&mut self) {
        // SAFETY: we own the pointer (from RSA_new or d2i_RSA_PUBKEY).
        unsafe { lc::RSA_free(self.0.as_ptr()) }
    }
}

impl Rsa {
    /// A new private key of `bits` bits with public exponent 65537.
    pub fn generate(bits: i32) -> Option<Rsa> {
        // SAFETY: RSA_new has no preconditions; the result is checked.
        let rsa = Rsa(NonNull::new(unsafe { lc::RSA_new() })?);
        // SAFETY: BN_new has no preconditions; the result is checked and
        // freed below on every path.
        let e = NonNull::new(unsafe { lc::BN_new() })?;
        // SAFETY: `e` and `rsa` are valid objects of ours; a null callback
        // is allowed.
        let ok = unsafe {
            lc::BN_set_word(e.as_ptr(), 65537) == 1
                && lc::RSA_generate_key_ex(rsa.0.as_ptr(), bits, e.as_ptr(), std::ptr::null_mut())
                    == 1
        };
        // SAFETY: `e` came from BN_new and is not used after this.
        unsafe { lc::BN_free(e.as_ptr()) };
        ok.then_some(rsa)
    }

    /// A public key from X.509 SubjectPublicKeyInfo DER.
    pub fn from_public_der(der: &[u8]) -> Option<Rsa> {
        let mut at = der.as_ptr();
        let len = std::os::raw::c_long::try_from(der.len()).ok()?;
        // SAFETY: `at` points at `len` readable bytes; a null `out` asks
        // for a new object, which is checked.
        Some(Rsa(NonNull::new(unsafe {
            lc::d2i_RSA_PUBKEY(std::ptr::null_mut(), &mut at, len)
        })?))
    }

    /// The key size in bytes (the size of every ciphertext).
    pub fn size(&self) -> usize {
        // SAFETY: a valid key.
        unsafe { lc::RSA_size(self.0.as_ptr()) as usize }
    }

    /// The modulus, big-endian, `size()` bytes.
    pub fn modulus(&self) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.size()];
        // SAFETY: a valid key; RSA_get0_n returns its modulus (owned by the
        // key), and `out` has room for `out.len()` bytes.
        let ok = unsafe {
            let n = lc::RSA_get0_n(self.0.as_ptr());
            !n.is_null() && lc::BN_bn2bin_padded(out.as_mut_ptr(), out.len(), n) == 1
        };
        ok.then_some(out)
    }

    /// RSAES-OAEP (SHA-1, MGF1-SHA-1, no label) decryption; `None` for
    /// anything that is not a valid ciphertext for this key.
    pub fn oaep_decrypt(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        if ciphertext.len() != self.size() {
            return None;
        }
        self.oaep(lc::RSA_private_decrypt, ciphertext)
    }

    /// RSAES-OAEP (SHA-1, MGF1-SHA-1, no label) encryption, as clients do.
    pub fn oaep_encrypt(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.oaep(lc::RSA_public_encrypt, plaintext)
    }

    /// One OAEP operation (`RSA_private_decrypt` or `RSA_public_encrypt`,
    /// which take the same arguments) into a buffer of the key's size.
    fn oaep(&self, op: Operation, input: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.size()];
        // SAFETY: a valid key; `input` is `len` readable bytes and `out` has
        // room for RSA_size bytes, the most either operation writes (an input
        // too long for the key fails).
        let n = unsafe {
            op(
                input.len(),
                input.as_ptr(),
                out.as_mut_ptr(),
                self.0.as_ptr(),
                lc::RSA_PKCS1_OAEP_PADDING,
            )
        };
        out.truncate(usize::try_from(n).ok()?);
        Some(out)
    }
}
