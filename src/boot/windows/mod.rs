//! Windows: finding the installation of a Gen1 disk ([`discover`]), the bcdboot file set
//! ([`files`]), the BCD store model ([`bcd`]), the SYSTEM hive and its `MountedDevices` patch
//! ([`hive`], [`mounted`]), ReAgent.xml ([`reagent`]), and what a conversion writes for them
//! once the GPT identity is known ([`target`]), the version from the SOFTWARE hive
//! ([`version`]).
pub mod bcd;
pub mod discover;
pub mod files;
pub mod hive;
pub mod mounted;
pub mod reagent;
pub mod target;
pub mod version;

pub use discover::{discover, Part, WindowsInstall, WindowsOptions};
pub use target::{convert_install, DiskWrite, GptIdentity, WindowsTarget};
