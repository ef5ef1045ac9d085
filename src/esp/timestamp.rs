//! The conversion of Unix time to FAT timestamps (fatgen103 section 6, "Date and Time
//! Formats"). The FAT layouts the ESP builder checks and patches are in [`crate::fs::fat::raw`].

/// A FAT timestamp: date and time words plus the 10 ms creation-time field.
///
/// Date: bits 15-9 year since 1980, 8-5 month, 4-0 day. Time: bits 15-11 hour, 10-5 minute,
/// 4-0 seconds / 2. Tenth: 0..=199 units of 10 ms added to the 2-second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatTimestamp {
    pub date: u16,
    pub time: u16,
    pub tenth: u8,
}

/// 1980-01-01T00:00:00Z, the earliest time FAT can store.
pub const FAT_EPOCH_UNIX: i64 = 315_532_800;
/// 2107-12-31T23:59:59Z, the latest time FAT can store.
pub const FAT_MAX_UNIX: i64 = 4_354_819_199;
const SECONDS_PER_DAY: i64 = 86_400;

impl FatTimestamp {
    /// The FAT time of `unix` seconds (UTC; FAT has no time zone and we never apply the local
    /// one, so the result does not depend on the machine). Times outside 1980..=2107 are clamped.
    pub fn from_unix(unix: i64) -> Self {
        let t = unix.clamp(FAT_EPOCH_UNIX, FAT_MAX_UNIX);
        // Every step below is checked; with `t` clamped to 1980..=2107 none can fail, and the
        // FAT epoch is only the fallback of a step that cannot happen.
        Self::of_clamped(t).unwrap_or(FatTimestamp {
            date: (1 << 5) | 1,
            time: 0,
            tenth: 0,
        })
    }

    fn of_clamped(t: i64) -> Option<Self> {
        let days = t.div_euclid(SECONDS_PER_DAY);
        let secs = t.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days)?;
        let hour = u16::try_from(secs / 3600).ok()?;
        let minute = u16::try_from(secs % 3600 / 60).ok()?;
        let second = u16::try_from(secs % 60).ok()?;
        // 1980 <= year <= 2107, so the offset fits in the 7 bits of the date word.
        let year_since_1980 = u16::try_from(year.checked_sub(1980)?).ok()?;
        let date =
            (year_since_1980 << 9) | (u16::try_from(month).ok()? << 5) | u16::try_from(day).ok()?;
        let time = (hour << 11) | (minute << 5) | (second / 2);
        let tenth = if second % 2 == 1 { 100 } else { 0 };
        Some(FatTimestamp { date, time, tenth })
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
/// Only called with clamped inputs (1980..=2107); every step is checked all the same.
fn civil_from_days(days: i64) -> Option<(i64, u32, u32)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = doe
        .checked_sub(doe / 1460)?
        .checked_add(doe / 36_524)?
        .checked_sub(doe / 146_096)?
        / 365;
    let doy = doe.checked_sub(
        yoe.checked_mul(365)?
            .checked_add(yoe / 4)?
            .checked_sub(yoe / 100)?,
    )?;
    let mp = doy.checked_mul(5)?.checked_add(2)? / 153;
    let day = doy
        .checked_sub(mp.checked_mul(153)?.checked_add(2)? / 5)?
        .checked_add(1)?;
    let month = if mp < 10 {
        mp.checked_add(3)?
    } else {
        mp.checked_sub(9)?
    };
    let month = u32::try_from(month).ok()?;
    let year = yoe
        .checked_add(era.checked_mul(400)?)?
        .checked_add(i64::from(month <= 2))?;
    Some((year, month, u32::try_from(day).ok()?))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn fat_epoch_is_the_smallest_timestamp() {
        let t = FatTimestamp::from_unix(FAT_EPOCH_UNIX);
        assert_eq!((t.date, t.time, t.tenth), ((1 << 5) | 1, 0, 0));
        assert_eq!(FatTimestamp::from_unix(0), t, "1970 clamps to 1980");
        assert_eq!(FatTimestamp::from_unix(i64::MIN), t);
    }

    #[test]
    fn known_dates() {
        // 2020-09-13T12:26:40Z
        let t = FatTimestamp::from_unix(1_600_000_000);
        assert_eq!(t.date, (40 << 9) | (9 << 5) | 13);
        assert_eq!(t.time, (12 << 11) | (26 << 5) | 20);
        assert_eq!(t.tenth, 0);
        // 2000-02-29T23:59:59Z: leap day, odd second -> 100 tenths.
        let t = FatTimestamp::from_unix(951_868_799);
        assert_eq!(t.date, (20 << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (23 << 11) | (59 << 5) | 29);
        assert_eq!(t.tenth, 100);
    }

    #[test]
    fn far_future_clamps_to_2107() {
        let t = FatTimestamp::from_unix(i64::MAX);
        assert_eq!(t.date, (127 << 9) | (12 << 5) | 31);
        assert_eq!(t.time, (23 << 11) | (59 << 5) | 29);
    }
}
