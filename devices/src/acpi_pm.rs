//! ACPI fixed-hardware registers: PM1 event/control blocks, the PM timer,
//! GPE0, and the reset control register. Writing S5 with SLP_EN powers the
//! machine off; the power button is a fixed event raised through the SCI.

use std::sync::Arc;
use std::time::Instant;

use crate::bus::BusDeviceMut;
use crate::interrupt::LevelInterrupt;
use crate::system::{SystemEvent, SystemEvents};

/// PM1 status/enable bits.
const TMR_STS: u16 = 1 << 0;
const GBL_STS: u16 = 1 << 5;
const PWRBTN_STS: u16 = 1 << 8;
const WAK_STS: u16 = 1 << 15;
const PM1_STS_WRITE_CLEAR: u16 = TMR_STS | GBL_STS | PWRBTN_STS | WAK_STS | (1 << 10);
const PM1_EN_MASK: u16 = TMR_STS | GBL_STS | PWRBTN_STS | (1 << 10);
/// PM1 control bits.
const SCI_EN: u16 = 1 << 0;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_EN: u16 = 1 << 13;
/// The PM timer runs at 3.579545 MHz.
const PM_TIMER_HZ: u128 = 3_579_545;

/// Register offsets within the block at `layout::ACPI_PM1A_EVT`.
const PM1_STS: u64 = 0;
const PM1_EN: u64 = 2;
const PM1_CNT: u64 = 4;
const PM_TMR: u64 = 8;
/// Length of the PM1/timer block.
pub const PM_BLOCK_LEN: u64 = 12;
pub const GPE_BLOCK_LEN: u64 = 4;

pub struct AcpiPm {
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe0_sts: u16,
    gpe0_en: u16,
    s5_sleep_type: u8,
    started: Instant,
    sci: Arc<dyn LevelInterrupt>,
    events: Arc<dyn SystemEvents>,
}

impl AcpiPm {
    pub fn new(
        sci: Arc<dyn LevelInterrupt>,
        events: Arc<dyn SystemEvents>,
        s5_sleep_type: u8,
    ) -> Self {
        AcpiPm {
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: SCI_EN,
            gpe0_sts: 0,
            gpe0_en: 0,
            s5_sleep_type,
            started: Instant::now(),
            sci,
            events,
        }
    }

    /// Presses the power button: the guest's ACPI driver sees a fixed event.
    pub fn press_power_button(&mut self) {
        self.pm1_sts |= PWRBTN_STS;
        self.update_sci();
    }

    fn update_sci(&self) {
        let pending = (self.pm1_sts & self.pm1_en) != 0 || (self.gpe0_sts & self.gpe0_en) != 0;
        self.sci.set_level(pending);
    }

    fn timer(&self) -> u32 {
        let ticks = self.started.elapsed().as_nanos() * PM_TIMER_HZ / 1_000_000_000;
        ticks as u32
    }

    fn write_cnt(&mut self, value: u16) {
        self.pm1_cnt = (value & !SLP_EN) | SCI_EN;
        if value & SLP_EN != 0 {
            let sleep_type = ((value >> SLP_TYP_SHIFT) & 0x7) as u8;
            if sleep_type == self.s5_sleep_type {
                self.events.request(SystemEvent::PowerOff);
            } else {
                tracing::info!("guest asked for sleep state {sleep_type}, which is not supported");
            }
        }
    }

    /// The GPE0 block (status then enable), at its own ports.
    pub fn gpe(&mut self) -> GpeAccess<'_> {
        GpeAccess(self)
    }

    fn read_reg(&self, offset: u64) -> u32 {
        match offset {
            PM1_STS => u32::from(self.pm1_sts) | (u32::from(self.pm1_en) << 16),
            PM1_CNT => u32::from(self.pm1_cnt),
            PM_TMR => self.timer(),
            _ => 0,
        }
    }
}

/// Reads/writes of 1, 2 or 4 bytes at any offset, from a register map of u16s.
fn read_bytes(data: &mut [u8], offset: u64, reg: impl Fn(u64) -> u32) {
    let aligned = offset & !3;
    let value = u64::from(reg(aligned)) | (u64::from(reg(aligned + 4)) << 32);
    let shift = (offset - aligned) * 8;
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = (value >> (shift + 8 * i as u64)) as u8;
    }
}

fn le_value(data: &[u8]) -> u32 {
    data.iter().rev().fold(0, |v, b| (v << 8) | u32::from(*b))
}

impl BusDeviceMut for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytes(data, offset, |o| self.read_reg(o));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let value = le_value(data);
        match (offset, data.len()) {
            (PM1_STS, 4) => {
                self.pm1_sts &= !(value as u16 & PM1_STS_WRITE_CLEAR);
                self.pm1_en = (value >> 16) as u16 & PM1_EN_MASK;
            }
            (PM1_STS, _) => self.pm1_sts &= !(value as u16 & PM1_STS_WRITE_CLEAR),
            (PM1_EN, _) => self.pm1_en = value as u16 & PM1_EN_MASK,
            (PM1_CNT, _) => self.write_cnt(value as u16),
            _ => {}
        }
        self.update_sci();
    }
}

pub struct GpeAccess<'a>(&'a mut AcpiPm);

impl GpeAccess<'_> {
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let pm = &*self.0;
        read_bytes(data, offset, |o| {
            if o == 0 {
                u32::from(pm.gpe0_sts) | (u32::from(pm.gpe0_en) << 16)
            } else {
                0
            }
        });
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let value = le_value(data);
        match (offset, data.len()) {
            (0, 4) => {
                self.0.gpe0_sts &= !(value as u16);
                self.0.gpe0_en = (value >> 16) as u16;
            }
            (0, _) => self.0.gpe0_sts &= !(value as u16),
            (2, _) => self.0.gpe0_en = value as u16,
            _ => {}
        }
        self.0.update_sci();
    }
}

/// The GPE0 block as its own bus device, sharing the PM state.
pub struct GpeBlock(pub Arc<std::sync::Mutex<AcpiPm>>);

impl crate::bus::BusDevice for GpeBlock {
    fn read(&self, offset: u64, data: &mut [u8]) {
        crate::bus::lock(&self.0).gpe().read(offset, data)
    }
    fn write(&self, offset: u64, data: &[u8]) {
        crate::bus::lock(&self.0).gpe().write(offset, data)
    }
}

/// The reset control register at port 0xcf9: writing the reset value resets.
pub struct ResetControl {
    reset_value: u8,
    events: Arc<dyn SystemEvents>,
}

impl ResetControl {
    pub fn new(reset_value: u8, events: Arc<dyn SystemEvents>) -> Self {
        ResetControl {
            reset_value,
            events,
        }
    }
}

impl BusDeviceMut for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if data
            .first()
            .is_some_and(|v| v & self.reset_value == self.reset_value)
        {
            self.events.request(SystemEvent::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<SystemEvent>>,
        sci: AtomicBool,
    }
    impl SystemEvents for Recorder {
        fn request(&self, event: SystemEvent) {
            self.events.lock().unwrap().push(event);
        }
    }
    impl LevelInterrupt for Recorder {
        fn set_level(&self, asserted: bool) {
            self.sci.store(asserted, Ordering::SeqCst);
        }
    }

    fn pm() -> (AcpiPm, Arc<Recorder>) {
        let r = Arc::new(Recorder::default());
        (AcpiPm::new(r.clone(), r.clone(), 5), r)
    }

    #[test]
    fn s5_powers_off() {
        let (mut pm, r) = pm();
        pm.write(PM1_CNT, &(SLP_EN | (5 << SLP_TYP_SHIFT)).to_le_bytes());
        assert_eq!(*r.events.lock().unwrap(), vec![SystemEvent::PowerOff]);
        // Other sleep types are refused, not treated as power-off.
        pm.write(PM1_CNT, &(SLP_EN | (1 << SLP_TYP_SHIFT)).to_le_bytes());
        assert_eq!(r.events.lock().unwrap().len(), 1);
    }

    #[test]
    fn sci_is_always_enabled() {
        let (mut pm, _) = pm();
        let mut cnt = [0u8; 2];
        pm.write(PM1_CNT, &[0, 0]);
        pm.read(PM1_CNT, &mut cnt);
        assert_eq!(u16::from_le_bytes(cnt) & SCI_EN, SCI_EN);
    }

    #[test]
    fn power_button_raises_sci_until_acked() {
        let (mut pm, r) = pm();
        pm.press_power_button();
        assert!(!r.sci.load(Ordering::SeqCst), "not enabled yet");
        pm.write(PM1_EN, &PWRBTN_STS.to_le_bytes());
        assert!(r.sci.load(Ordering::SeqCst));
        let mut sts = [0u8; 2];
        pm.read(PM1_STS, &mut sts);
        assert_eq!(u16::from_le_bytes(sts) & PWRBTN_STS, PWRBTN_STS);
        pm.write(PM1_STS, &PWRBTN_STS.to_le_bytes());
        assert!(!r.sci.load(Ordering::SeqCst));
    }

    #[test]
    fn timer_advances() {
        let (mut pm, _) = pm();
        let mut a = [0u8; 4];
        let mut b = [0u8; 4];
        pm.read(PM_TMR, &mut a);
        std::thread::sleep(std::time::Duration::from_millis(2));
        pm.read(PM_TMR, &mut b);
        assert!(u32::from_le_bytes(b).wrapping_sub(u32::from_le_bytes(a)) > 3000);
    }

    #[test]
    fn reset_register() {
        let r = Arc::new(Recorder::default());
        let mut rc = ResetControl::new(0x06, r.clone());
        rc.write(0, &[0x02]);
        assert!(r.events.lock().unwrap().is_empty());
        rc.write(0, &[0x06]);
        assert_eq!(*r.events.lock().unwrap(), vec![SystemEvent::Reset]);
    }
}
