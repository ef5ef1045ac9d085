//! Windows: the BCD store model ([`bcd`]) and the `SYSTEM\MountedDevices` patch ([`mounted`]).

pub mod bcd;
pub mod mounted;
