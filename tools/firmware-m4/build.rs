//! Puts memory.x where cortex-m-rt's link.x finds it, and copies the model named by
//! `FIRMWARE_MODEL` into OUT_DIR for `include_bytes!`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");

    println!("cargo:rerun-if-env-changed=FIRMWARE_MODEL");
    let Some(model) = std::env::var_os("FIRMWARE_MODEL") else {
        panic!(
            "FIRMWARE_MODEL is not set: name the int8 model file to embed, e.g.\n  \
             FIRMWARE_MODEL=runs/X/relu/relu.int8.fmlp cargo build --release\n\
             (or let `firmware-sim qemu --model FILE` build and run it)"
        );
    };
    let model = PathBuf::from(model);
    println!("cargo:rerun-if-changed={}", model.display());
    if let Err(e) = std::fs::copy(&model, out.join("model.fmlp")) {
        panic!("FIRMWARE_MODEL={}: {e}", model.display());
    }
}
