//! Fuzz target `bootfiles`: see `vhdtool_fuzz::bootfiles` for what it feeds and which
//! properties it checks.
//!
//! libfuzzer-sys turns every panic into an abort through its panic hook, before any
//! `catch_unwind` can see it. `boot::linux::ext4::with_ext4` catches panics of the `ext4-view`
//! crate on its worker thread by design (the last guard behind our bounds checks), so this
//! target's hook lets a panic on that thread unwind to the guard, and aborts on any other.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

static CAUGHT: AtomicU64 = AtomicU64::new(0);

libfuzzer_sys::fuzz_target!(
    init: {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_worker = std::thread::current().name() == Some(vhdtool_fuzz::EXT4_THREAD);
            if on_worker {
                let n = CAUGHT.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    eprintln!("ext4-view panicked (caught by with_ext4, {n} so far): {info}");
                }
                return;
            }
            default_hook(info);
            std::process::abort();
        }));
    },
    |data: &[u8]| vhdtool_fuzz::bootfiles(data)
);
