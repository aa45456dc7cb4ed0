//! `infer-c/include/fmlp.h` is what cbindgen makes of `infer-c/src/lib.rs` with
//! `infer-c/cbindgen.toml`: a change to the C API that is not in the committed header fails
//! here. `FMLP_BLESS=1 cargo test -p e2e-tests --test c_header` rewrites it.

use std::path::{Path, PathBuf};

fn infer_c() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infer-c")
}

#[test]
fn the_committed_header_is_the_one_cbindgen_generates() {
    let dir = infer_c();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("infer-c/cbindgen.toml reads");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen reads infer-c/src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/fmlp.h");
    if std::env::var_os("FMLP_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what cbindgen generates from the code: run FMLP_BLESS=1 cargo test -p e2e-tests --test c_header \
         and commit it\n--- generated ---\n{}",
        path.display(),
        String::from_utf8_lossy(&generated)
    );
}
