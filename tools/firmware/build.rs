//! Writes the board's memory map (`FIRMWARE_BOARD`) where cortex-m-rt's link.x finds it,
//! copies the model named by `FIRMWARE_MODEL` into OUT_DIR for `include_bytes!`, and sizes
//! the firmware's buffers for it from its header (`model.rs`).

use std::path::PathBuf;

/// Flash and RAM of each board, as QEMU's machine of the same name maps them.
const BOARDS: [(&str, &str, &str); 3] = [
    // Arm MPS2 AN386 (Cortex-M4F) and AN385 (Cortex-M3): 4 MiB of each.
    ("mps2-an386", "4M", "4M"),
    ("mps2-an385", "4M", "4M"),
    // BBC micro:bit (nRF51822, Cortex-M0): 256 KB of flash, 16 KB of RAM.
    ("microbit", "256K", "16K"),
];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=FIRMWARE_BOARD");
    let board = std::env::var("FIRMWARE_BOARD").unwrap_or_else(|_| "mps2-an386".into());
    let Some(&(_, flash, ram)) = BOARDS.iter().find(|b| b.0 == board) else {
        let names: Vec<&str> = BOARDS.iter().map(|b| b.0).collect();
        panic!("FIRMWARE_BOARD={board} is not one of {}", names.join(", "));
    };
    let memory = format!(
        "/* {board}, as QEMU maps it. */\nMEMORY\n{{\n  FLASH : ORIGIN = 0x00000000, LENGTH = {flash}\n  RAM   : ORIGIN = 0x20000000, LENGTH = {ram}\n}}\n"
    );
    std::fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rustc-link-search={}", out.display());

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
    let bytes = std::fs::read(&model).unwrap_or_else(|e| panic!("FIRMWARE_MODEL={}: {e}", model.display()));
    let parsed = infer_core::Int8Model::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("FIRMWARE_MODEL={} is not an int8 model this firmware runs: {e}", model.display()));
    let arch = parsed.architecture();
    let features = parsed.extras().has_input_quantizer();
    std::fs::write(
        out.join("model.rs"),
        format!(
            "/// The model's input width: pixels (bytes) or features (f32).\nconst MODEL_INPUTS: usize = {};\n\
             /// Whether the model takes real-valued features through its input quantizer.\nconst MODEL_FEATURES: bool = {features};\n\
             /// The model's classes.\nconst MODEL_CLASSES: usize = {};\n\
             /// Bytes of scratch the model's pass needs ({arch}).\nconst MODEL_SCRATCH: usize = {};\n",
            arch.inputs(),
            arch.classes(),
            parsed.scratch_bytes()
        ),
    )
    .unwrap();
    std::fs::write(out.join("model.fmlp"), &bytes).unwrap();
}
