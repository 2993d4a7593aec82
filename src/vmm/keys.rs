//! Key names for scripting (`send-key ctrl-alt-delete`): QEMU's key names
//! (`sendkey`'s list, so existing scripts work) plus a few obvious aliases,
//! each mapped to its PC AT set-1 key. Raw codes are accepted too:
//! `0x1e` (a plain key), `0xe048` (an `E0`-prefixed one).

use devices::i8042::Key;

/// Why a key name was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    #[error("unknown key '{0}' (names as QEMU's sendkey: ctrl, alt, delete, f1, a, ret, ...)")]
    Unknown(String),
    #[error("no keys given")]
    Empty,
    #[error("too many keys at once ({0}; at most {MAX_KEYS_AT_ONCE})")]
    TooMany(usize),
}

/// Keys held together at most in one combination.
pub const MAX_KEYS_AT_ONCE: usize = 16;

use Key::{Extended as E, Plain as P};

/// (name, key) for every named key.
#[rustfmt::skip]
const NAMES: &[(&str, Key)] = &[
    ("esc", P(0x01)), ("1", P(0x02)), ("2", P(0x03)), ("3", P(0x04)), ("4", P(0x05)),
    ("5", P(0x06)), ("6", P(0x07)), ("7", P(0x08)), ("8", P(0x09)), ("9", P(0x0a)),
    ("0", P(0x0b)), ("minus", P(0x0c)), ("equal", P(0x0d)), ("backspace", P(0x0e)),
    ("tab", P(0x0f)), ("q", P(0x10)), ("w", P(0x11)), ("e", P(0x12)), ("r", P(0x13)),
    ("t", P(0x14)), ("y", P(0x15)), ("u", P(0x16)), ("i", P(0x17)), ("o", P(0x18)),
    ("p", P(0x19)), ("bracket_left", P(0x1a)), ("bracket_right", P(0x1b)), ("ret", P(0x1c)),
    ("ctrl", P(0x1d)), ("a", P(0x1e)), ("s", P(0x1f)), ("d", P(0x20)), ("f", P(0x21)),
    ("g", P(0x22)), ("h", P(0x23)), ("j", P(0x24)), ("k", P(0x25)), ("l", P(0x26)),
    ("semicolon", P(0x27)), ("apostrophe", P(0x28)), ("grave_accent", P(0x29)),
    ("shift", P(0x2a)), ("backslash", P(0x2b)), ("z", P(0x2c)), ("x", P(0x2d)),
    ("c", P(0x2e)), ("v", P(0x2f)), ("b", P(0x30)), ("n", P(0x31)), ("m", P(0x32)),
    ("comma", P(0x33)), ("dot", P(0x34)), ("slash", P(0x35)), ("shift_r", P(0x36)),
    ("kp_multiply", P(0x37)), ("asterisk", P(0x37)), ("alt", P(0x38)), ("spc", P(0x39)),
    ("caps_lock", P(0x3a)), ("f1", P(0x3b)), ("f2", P(0x3c)), ("f3", P(0x3d)),
    ("f4", P(0x3e)), ("f5", P(0x3f)), ("f6", P(0x40)), ("f7", P(0x41)), ("f8", P(0x42)),
    ("f9", P(0x43)), ("f10", P(0x44)), ("num_lock", P(0x45)), ("scroll_lock", P(0x46)),
    ("kp_7", P(0x47)), ("kp_8", P(0x48)), ("kp_9", P(0x49)), ("kp_subtract", P(0x4a)),
    ("kp_4", P(0x4b)), ("kp_5", P(0x4c)), ("kp_6", P(0x4d)), ("kp_add", P(0x4e)),
    ("kp_1", P(0x4f)), ("kp_2", P(0x50)), ("kp_3", P(0x51)), ("kp_0", P(0x52)),
    ("kp_decimal", P(0x53)), ("sysrq", P(0x54)), ("less", P(0x56)), ("f11", P(0x57)),
    ("f12", P(0x58)),
    ("kp_enter", E(0x1c)), ("ctrl_r", E(0x1d)), ("kp_divide", E(0x35)), ("print", E(0x37)),
    ("alt_r", E(0x38)), ("home", E(0x47)), ("up", E(0x48)), ("pgup", E(0x49)),
    ("left", E(0x4b)), ("right", E(0x4d)), ("end", E(0x4f)), ("down", E(0x50)),
    ("pgdn", E(0x51)), ("insert", E(0x52)), ("delete", E(0x53)), ("meta_l", E(0x5b)),
    ("meta_r", E(0x5c)), ("menu", E(0x5d)), ("power", E(0x5e)), ("sleep", E(0x5f)),
    ("wake", E(0x63)), ("audiomute", E(0x20)), ("volumedown", E(0x2e)),
    ("volumeup", E(0x30)),
    ("pause", Key::Pause),
];

/// Other names people type.
const ALIASES: &[(&str, &str)] = &[
    ("enter", "ret"),
    ("return", "ret"),
    ("space", "spc"),
    ("escape", "esc"),
    ("del", "delete"),
    ("ins", "insert"),
    ("control", "ctrl"),
    ("lctrl", "ctrl"),
    ("rctrl", "ctrl_r"),
    ("lshift", "shift"),
    ("rshift", "shift_r"),
    ("lalt", "alt"),
    ("ralt", "alt_r"),
    ("altgr", "alt_r"),
    ("super", "meta_l"),
    ("win", "meta_l"),
    ("meta", "meta_l"),
    ("pageup", "pgup"),
    ("pagedown", "pgdn"),
    ("capslock", "caps_lock"),
    ("numlock", "num_lock"),
    ("scrolllock", "scroll_lock"),
    ("printscreen", "print"),
    ("prtsc", "print"),
    ("backtick", "grave_accent"),
    ("period", "dot"),
];

/// The key a name (or raw code) stands for.
pub fn key_by_name(name: &str) -> Result<Key, KeyNameError> {
    let lower = name.trim().to_ascii_lowercase();
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |(_, real)| real);
    if let Some((_, key)) = NAMES.iter().find(|(n, _)| *n == canonical) {
        return Ok(*key);
    }
    let unknown = || KeyNameError::Unknown(name.to_string());
    let hex = canonical.strip_prefix("0x").ok_or_else(unknown)?;
    let code = u16::from_str_radix(hex, 16).map_err(|_| unknown())?;
    let key = match code {
        0x01..=0x7f => Key::Plain(code as u8),
        0xe001..=0xe07f => Key::Extended(code as u8),
        _ => return Err(unknown()),
    };
    if key.is_known() {
        Ok(key)
    } else {
        Err(unknown())
    }
}

/// The keys of a combination: `ctrl-alt-delete`, `shift+a` or a list.
pub fn parse_combo(combo: &str) -> Result<Vec<Key>, KeyNameError> {
    let names: Vec<&str> = combo
        .split(['-', '+'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    keys_by_names(&names)
}

/// The keys for a list of names, in order.
pub fn keys_by_names(names: &[&str]) -> Result<Vec<Key>, KeyNameError> {
    if names.is_empty() {
        return Err(KeyNameError::Empty);
    }
    if names.len() > MAX_KEYS_AT_ONCE {
        return Err(KeyNameError::TooMany(names.len()));
    }
    names.iter().map(|n| key_by_name(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_codes() {
        assert_eq!(key_by_name("ctrl"), Ok(P(0x1d)));
        assert_eq!(key_by_name("Delete"), Ok(E(0x53)));
        assert_eq!(key_by_name("del"), Ok(E(0x53)));
        assert_eq!(key_by_name("enter"), Ok(P(0x1c)));
        assert_eq!(key_by_name("up"), Ok(E(0x48)));
        assert_eq!(key_by_name("pause"), Ok(Key::Pause));
        assert_eq!(key_by_name("0x1e"), Ok(P(0x1e)));
        assert_eq!(key_by_name("0xe048"), Ok(E(0x48)));
        for bad in [
            "", "hyper", "0x00", "0xe0ff", "0x7e", "0xzz", "0x1e1e", "0xe001",
        ] {
            assert!(key_by_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_name_is_a_known_key_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, key) in NAMES {
            assert!(key.is_known(), "{name}");
            assert!(seen.insert(*name), "{name} twice");
        }
        for (alias, real) in ALIASES {
            assert!(NAMES.iter().any(|(n, _)| n == real), "{alias} → {real}");
            assert!(
                !NAMES.iter().any(|(n, _)| n == alias),
                "{alias} shadows a name"
            );
        }
    }

    #[test]
    fn combinations() {
        assert_eq!(
            parse_combo("ctrl-alt-delete"),
            Ok(vec![P(0x1d), P(0x38), E(0x53)])
        );
        assert_eq!(parse_combo("shift+a"), Ok(vec![P(0x2a), P(0x1e)]));
        assert_eq!(parse_combo(""), Err(KeyNameError::Empty));
        assert!(matches!(
            parse_combo("ctrl-alt-frobnicate"),
            Err(KeyNameError::Unknown(n)) if n == "frobnicate"
        ));
        let many = vec!["a"; 17].join("-");
        assert_eq!(parse_combo(&many), Err(KeyNameError::TooMany(17)));
    }
}
