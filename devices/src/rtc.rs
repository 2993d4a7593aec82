//! The MC146818 CMOS real-time clock at ports 0x70/0x71: the host's time
//! (UTC) in BCD, 24-hour mode, and 128 bytes of CMOS memory. Writes to the
//! time registers set an offset, so a guest can keep its own time.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDeviceMut;

pub const PORT: u64 = 0x70;
pub const PORT_COUNT: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

const B_24_HOUR: u8 = 0x02;
const B_BINARY: u8 = 0x04;
const D_VALID_RAM_AND_TIME: u8 = 0x80;

pub struct Rtc {
    index: u8,
    cmos: [u8; 128],
    /// Seconds added to the host clock (the guest may set its own time).
    offset: i64,
}

impl Default for Rtc {
    fn default() -> Self {
        let mut cmos = [0u8; 128];
        cmos[usize::from(REG_A)] = 0x26; // 32.768 kHz time base, 1024 Hz rate
        cmos[usize::from(REG_B)] = B_24_HOUR;
        cmos[usize::from(REG_D)] = D_VALID_RAM_AND_TIME;
        Rtc {
            index: 0,
            cmos,
            offset: 0,
        }
    }
}

/// Calendar date and time (UTC) for a Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u8,
    day: u8,
    weekday: u8, // 1 = Sunday
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    fn from_unix(t: i64) -> Self {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
        }
    }

    fn to_unix(self) -> i64 {
        let y = self.year - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

impl Rtc {
    fn now(&self) -> DateTime {
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        DateTime::from_unix(host + self.offset)
    }

    fn encode(&self, value: u8) -> u8 {
        if self.cmos[usize::from(REG_B)] & B_BINARY != 0 {
            value
        } else {
            ((value / 10) << 4) | (value % 10)
        }
    }

    fn decode(&self, value: u8) -> u8 {
        if self.cmos[usize::from(REG_B)] & B_BINARY != 0 {
            value
        } else {
            (value >> 4) * 10 + (value & 0xf)
        }
    }

    /// Sets a byte of CMOS memory past the clock registers (what firmware
    /// reads at start: memory sizes, the CPU count).
    pub fn set_nvram(&mut self, index: u8, value: u8) {
        if (0x0e..0x80).contains(&index) {
            self.cmos[usize::from(index)] = value;
        }
    }

    fn read_register(&mut self, reg: u8) -> u8 {
        let t = self.now();
        match reg {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => self.encode(t.hour),
            REG_WEEKDAY => self.encode(t.weekday),
            REG_DAY => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode((t.year % 100) as u8),
            REG_CENTURY => self.encode((t.year / 100) as u8),
            REG_C => std::mem::take(&mut self.cmos[usize::from(REG_C)]), // read clears flags
            other => self.cmos[usize::from(other)],
        }
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        let time_field = matches!(
            reg,
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY | REG_MONTH | REG_YEAR | REG_CENTURY
        );
        if time_field {
            let mut t = self.now();
            let v = self.decode(value);
            match reg {
                REG_SECONDS => t.second = v.min(59),
                REG_MINUTES => t.minute = v.min(59),
                REG_HOURS => t.hour = v.min(23),
                REG_DAY => t.day = v.clamp(1, 31),
                REG_MONTH => t.month = v.clamp(1, 12),
                REG_YEAR => t.year = t.year / 100 * 100 + i64::from(v.min(99)),
                _ => t.year = i64::from(v) * 100 + t.year % 100,
            }
            let host = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            self.offset = t.to_unix() - host;
            return;
        }
        match reg {
            REG_C | REG_D => {}                                  // read-only
            REG_A => self.cmos[usize::from(reg)] = value & 0x7f, // UIP is read-only
            other => self.cmos[usize::from(other)] = value,
        }
    }
}

impl BusDeviceMut for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            1 => self.read_register(self.index),
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            0 => self.index = value & 0x7f, // bit 7 is the NMI mask
            _ => self.write_register(self.index, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trip() {
        for t in [
            0i64,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            1_709_164_800,
        ] {
            assert_eq!(DateTime::from_unix(t).to_unix(), t);
        }
        let d = DateTime::from_unix(1_709_164_800); // 2024-02-29 00:00:00, a Thursday
        assert_eq!((d.year, d.month, d.day, d.weekday), (2024, 2, 29, 5));
    }

    fn read(rtc: &mut Rtc, reg: u8) -> u8 {
        rtc.write(0, &[reg]);
        let mut v = [0];
        rtc.read(1, &mut v);
        v[0]
    }

    #[test]
    fn reads_bcd_time_and_valid_flag() {
        let mut rtc = Rtc::default();
        assert_eq!(read(&mut rtc, REG_D), 0x80);
        let sec = read(&mut rtc, REG_SECONDS);
        assert!(sec & 0xf < 10 && sec >> 4 < 6, "BCD seconds {sec:#x}");
        let century = read(&mut rtc, REG_CENTURY);
        assert_eq!(century, 0x20);
    }

    #[test]
    fn guest_can_set_the_year() {
        let mut rtc = Rtc::default();
        rtc.write(0, &[REG_YEAR]);
        rtc.write(1, &[0x99]);
        assert_eq!(read(&mut rtc, REG_YEAR), 0x99);
        rtc.write(0, &[0x20]);
        rtc.write(1, &[0x5a]);
        assert_eq!(read(&mut rtc, 0x20), 0x5a, "CMOS memory");
    }
}
