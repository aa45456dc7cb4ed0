//! `firmware-sim qemu`: builds `tools/firmware` for a board with a model embedded, runs it
//! on QEMU's emulation of that board, and compares every prediction and score with
//! infer-core's on the host.
//!
//! The firmware protocol (files in QEMU's working directory, through semihosting) is
//! described in `tools/firmware/src/main.rs`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use dataset::Split;
use dataset::cli::{DataArgs, data_of_model};
use infer_core::int8net::INT8_SCRATCH_MAX;
use infer_core::{Int8Model, Int8Scratch};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind};

/// An emulated board: QEMU's machine, its CPU, the Rust target, and the memory QEMU maps
/// (flash at 0, RAM at 0x2000_0000), which the firmware's build.rs also knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Board {
    /// Arm MPS2 AN386: Cortex-M4F with the DSP extension (the SMLAD kernel); 4 MiB flash, 4 MiB RAM.
    #[value(name = "mps2-an386")]
    Mps2An386,
    /// Arm MPS2 AN385: Cortex-M3, no DSP extension (the portable kernel); 4 MiB flash, 4 MiB RAM.
    #[value(name = "mps2-an385")]
    Mps2An385,
    /// BBC micro:bit (nRF51822): Cortex-M0, Armv6-M (the portable kernel); 256 KB flash, 16 KB RAM.
    Microbit,
}

impl Board {
    /// QEMU's name for the machine, which the firmware's build.rs takes too.
    pub fn machine(self) -> &'static str {
        match self {
            Board::Mps2An386 => "mps2-an386",
            Board::Mps2An385 => "mps2-an385",
            Board::Microbit => "microbit",
        }
    }

    fn cpu(self) -> &'static str {
        match self {
            Board::Mps2An386 => "cortex-m4",
            Board::Mps2An385 => "cortex-m3",
            Board::Microbit => "cortex-m0",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Board::Mps2An386 => "thumbv7em-none-eabihf",
            Board::Mps2An385 => "thumbv7m-none-eabi",
            Board::Microbit => "thumbv6m-none-eabi",
        }
    }

    /// Bytes of flash and of RAM.
    fn memory(self) -> (u64, u64) {
        match self {
            Board::Mps2An386 | Board::Mps2An385 => (4 << 20, 4 << 20),
            Board::Microbit => (256 << 10, 16 << 10),
        }
    }

    /// Which infer-core kernel the firmware runs on this board's CPU.
    fn kernel(self) -> &'static str {
        match self {
            Board::Mps2An386 => "armv7em (SMLAD)",
            Board::Mps2An385 | Board::Microbit => "portable",
        }
    }

    fn describe(self) -> String {
        let (flash, ram) = self.memory();
        format!("QEMU {} ({}, {} KiB flash, {} KiB RAM)", self.machine(), self.cpu(), flash >> 10, ram >> 10)
    }
}

impl Board {
    /// `arm-none-eabi-gcc`'s options for this board's CPU and float ABI (the Rust target's).
    fn gcc_cpu(self) -> &'static [&'static str] {
        match self {
            Board::Mps2An386 => &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
            Board::Mps2An385 => &["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"],
            Board::Microbit => &["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"],
        }
    }
}

/// Which firmware runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Firmware {
    /// tools/firmware: Rust, infer-core linked as a crate (LTO across it).
    Rust,
    /// tools/firmware-c: C, through infer-c's `fmlp.h` and `libfmlp.a`.
    C,
}

impl Firmware {
    /// Its folder in this repository.
    pub fn default_dir(self) -> PathBuf {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools");
        match self {
            Firmware::Rust => tools.join("firmware"),
            Firmware::C => tools.join("firmware-c"),
        }
    }

    /// The ELF symbol of the embedded model.
    fn model_symbol(self) -> &'static str {
        match self {
            Firmware::Rust => "FIRMWARE_MODEL",
            Firmware::C => "firmware_model",
        }
    }
}

/// Where the boards' RAM starts (flash is at 0).
const RAM_ORIGIN: u64 = 0x2000_0000;
/// Which Debian packages provide the toolchain.
const INSTALL: &str = "apt-get install -y rustc-web rust-web-src gcc-arm-none-eabi qemu-system-arm";
/// Environment a parent cargo may have set that would change how the firmware is built.
const CARGO_ENV_TO_CLEAR: [&str; 8] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// What `qemu` was asked to do.
pub struct Args {
    pub model: PathBuf,
    pub board: Board,
    pub count: Option<usize>,
    pub data: DataArgs,
    /// Seed of a --test-split split.
    pub seed: u64,
    pub firmware: Firmware,
    pub firmware_dir: PathBuf,
    pub timeout: u64,
    pub json: bool,
}

/// The programs the firmware needs.
struct Toolchain {
    rustc: PathBuf,
    cargo: OsString,
    qemu: PathBuf,
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Finds the toolchain, or says exactly what to install.
fn toolchain() -> Result<Toolchain> {
    let rustc = std::env::var_os("FIRMWARE_RUSTC").map_or_else(|| PathBuf::from("/usr/bin/rustc"), PathBuf::from);
    let mut missing = Vec::new();
    match Command::new(&rustc).args(["--print", "sysroot"]).output() {
        Ok(out) if out.status.success() => {
            let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let core = sysroot.join("lib/rustlib/src/rust/library/core");
            if !core.is_dir() {
                missing.push(format!("the Rust standard library source ({} is missing: rust-web-src)", core.display()));
            }
        }
        _ => missing.push(format!(
            "a rustc that can build `core` for thumbv7em-none-eabihf at {} (rustc-web)",
            rustc.display()
        )),
    }
    if find_in_path("arm-none-eabi-gcc").is_none() {
        missing.push("the linker arm-none-eabi-gcc (gcc-arm-none-eabi)".into());
    }
    let qemu = find_in_path("qemu-system-arm");
    if qemu.is_none() {
        missing.push("the emulator qemu-system-arm (qemu-system-arm)".into());
    }
    if !missing.is_empty() {
        bail!(
            "the Cortex-M4 toolchain is not installed; missing:\n  - {}\ninstall it on Debian with\n  {INSTALL}\n\
             (elsewhere: FIRMWARE_RUSTC=path/to/a nightly rustc with the rust-src component, plus \
             arm-none-eabi-gcc and qemu-system-arm on PATH)",
            missing.join("\n  - ")
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Ok(Toolchain { rustc, cargo, qemu: qemu.expect("checked above") })
}

/// `cargo build --release --locked --target T` for `board` with Debian's rustc (which can
/// build `core`) into `target_dir`, free of what a parent cargo set; its output hidden.
fn cargo_build(tc: &Toolchain, board: Board, target_dir: &Path) -> Command {
    let mut cmd = Command::new(&tc.cargo);
    cmd.args(["build", "--release", "--locked", "--target", board.target()])
        .env("RUSTC", &tc.rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir)
        .stdout(Stdio::null());
    for var in CARGO_ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a build; an error says `what` failed.
fn run_build(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: running {}", cmd.get_program().to_string_lossy()))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

/// Builds the firmware for `board` with `model` embedded; returns the ELF.
fn build(tc: &Toolchain, firmware_dir: &Path, model: &Path, board: Board) -> Result<PathBuf> {
    ensure!(
        firmware_dir.join("Cargo.toml").is_file(),
        "{} is not the firmware crate (no Cargo.toml); pass --firmware-dir tools/firmware",
        firmware_dir.display()
    );
    let target_dir = firmware_dir.join("target");
    let mut cmd = cargo_build(tc, board, &target_dir);
    cmd.current_dir(firmware_dir).env("FIRMWARE_MODEL", model).env("FIRMWARE_BOARD", board.machine());
    run_build(cmd, &format!("building the firmware in {}", firmware_dir.display()))?;
    Ok(target_dir.join(board.target()).join("release/firmware"))
}

/// Builds `libfmlp.a` (infer-c) for `board`'s target, writes the model as C
/// (`trainer export --c-header`'s files) and compiles and links the C firmware in
/// `firmware_dir` with them; returns the ELF.
fn build_c(tc: &Toolchain, firmware_dir: &Path, blob: &[u8], board: Board) -> Result<PathBuf> {
    ensure!(
        firmware_dir.join("main.c").is_file(),
        "{} is not the C firmware (no main.c); pass --firmware-dir tools/firmware-c",
        firmware_dir.display()
    );
    let infer_c = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infer-c");
    let lib_dir = infer_c.join("target");
    let mut cargo = cargo_build(tc, board, &lib_dir);
    cargo.args(["-Z", "build-std=core", "--manifest-path"]).arg(infer_c.join("Cargo.toml"));
    cargo.env("RUSTFLAGS", format!("-C target-cpu={}", board.cpu()));
    run_build(cargo, &format!("building libfmlp.a for {}", board.target()))?;
    let lib = lib_dir.join(board.target()).join("release/libfmlp.a");

    let out = firmware_dir.join("target").join(board.machine());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let (flash, ram) = board.memory();
    let memory = format!(
        "/* {}, as QEMU maps it. */\nMEMORY\n{{\n  FLASH : ORIGIN = 0x00000000, LENGTH = {flash}\n  RAM : ORIGIN = 0x20000000, LENGTH = {ram}\n}}\n",
        board.machine()
    );
    let c = trainer::c_export::c_model(blob, "firmware", "firmware_model.h", "embedded by firmware-sim")?;
    for (name, text) in [("memory.ld", memory), ("firmware_model.h", c.header), ("firmware_model.c", c.source)] {
        runio::fsutil::write_atomic(&out.join(name), text.as_bytes()).with_context(|| format!("writing {name}"))?;
    }
    let elf = out.join("firmware.elf");
    let mut gcc = Command::new("arm-none-eabi-gcc");
    gcc.args(board.gcc_cpu())
        .args(["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections"])
        .args(["-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-Wl,-z,noexecstack"])
        .arg("-I")
        .arg(infer_c.join("include"))
        .arg("-I")
        .arg(&out)
        .arg("-I")
        .arg(firmware_dir)
        .arg("-L")
        .arg(&out)
        .arg("-T")
        .arg(firmware_dir.join("link.ld"))
        .args([firmware_dir.join("main.c"), firmware_dir.join("startup.c"), out.join("firmware_model.c"), lib])
        .args(["-lc", "-lgcc", "-o"])
        .arg(&elf);
    run_build(gcc, &format!("compiling the C firmware in {}", firmware_dir.display()))?;
    Ok(elf)
}

/// An exclusive lock on the firmware's build folder for `board` (a file in it), held until
/// the returned file is dropped.
fn lock_build(firmware_dir: &Path, board: Board) -> Result<std::fs::File> {
    let dir = firmware_dir.join("target").join(board.machine());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("build.lock");
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Flash and RAM of the firmware image, read from its ELF sections and symbols.
#[derive(Debug)]
struct ElfSizes {
    /// Allocated sections with contents (code, constants, the initial image of `.data`).
    flash: u64,
    /// The embedded model file, rounded up to its 64-byte alignment.
    weights: u64,
    /// `.data`, `.bss` and the like: the statics in RAM.
    static_ram: u64,
    /// `SMLAD` instructions in the code (32-bit Thumb-2 encodings).
    smlad: usize,
    /// The embedded model's bytes (the file, then any alignment padding).
    model: Vec<u8>,
}

fn elf_sizes(elf: &Path, model_symbol: &str) -> Result<ElfSizes> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let file = object::File::parse(&*bytes).with_context(|| format!("parsing {}", elf.display()))?;
    let (mut flash, mut static_ram, mut smlad) = (0, 0, 0);
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else { continue };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 {
            continue;
        }
        if section.address() >= RAM_ORIGIN {
            static_ram += section.size();
        }
        if section.kind() != SectionKind::UninitializedData {
            flash += section.size();
        }
        if section.kind() == SectionKind::Text {
            smlad += count_smlad(section.data()?);
        }
    }
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(model_symbol))
        .with_context(|| format!("{} has no symbol {model_symbol}", elf.display()))?;
    let section = file.section_by_index(symbol.section_index().context("the model symbol has no section")?)?;
    let at = (symbol.address() - section.address()) as usize;
    let model =
        section.data()?.get(at..at + symbol.size() as usize).context("the model symbol is out of its section")?;
    Ok(ElfSizes { flash, weights: symbol.size(), static_ram, smlad, model: model.to_vec() })
}

/// Counts `SMLAD Rd, Rn, Rm, Ra` (T1 encoding `FB2n aadm` with bits 7:4 zero, `Ra` not PC,
/// which would be `SMUAD`) at halfword positions of Thumb code.
fn count_smlad(code: &[u8]) -> usize {
    let halves: Vec<u16> = code.chunks_exact(2).map(|h| u16::from_le_bytes([h[0], h[1]])).collect();
    halves.windows(2).filter(|w| w[0] & 0xfff0 == 0xfb20 && w[1] & 0x00f0 == 0 && w[1] >> 12 != 0xf).count()
}

/// What the firmware printed at the end.
struct Trailer {
    images: usize,
    calibration_instructions: u64,
    calibration_ticks: u64,
    stack_bytes: u64,
}

fn parse_trailer(stdout: &str) -> Result<Trailer> {
    if let Some(line) = stdout.lines().find(|l| l.starts_with("firmware error:") || l.contains("panicked")) {
        bail!("the firmware failed: {line}");
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("firmware images="))
        .with_context(|| format!("the firmware printed no summary line; its output was:\n{stdout}"))?;
    let fields: HashMap<&str, u64> = line["firmware ".len()..]
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let get = |k: &str| fields.get(k).copied().with_context(|| format!("no `{k}` in the firmware's line: {line}"));
    Ok(Trailer {
        images: get("images")? as usize,
        calibration_instructions: get("calibration_instructions")?,
        calibration_ticks: get("calibration_ticks")?,
        stack_bytes: get("stack_bytes")?,
    })
}

/// Runs the ELF on QEMU with `images` in its working directory; returns what it printed
/// and `results.bin`.
fn run_qemu(tc: &Toolchain, board: Board, elf: &Path, images: &[u8], timeout: Duration) -> Result<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    std::fs::write(dir.path().join("inputs.bin"), images).context("writing inputs.bin")?;
    let out = std::fs::File::create(dir.path().join("stdout.txt"))?;
    let err = std::fs::File::create(dir.path().join("stderr.txt"))?;
    let mut child = Command::new(&tc.qemu)
        .current_dir(dir.path())
        .args(["-machine", board.machine(), "-cpu", board.cpu(), "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", tc.qemu.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("QEMU ran for more than {} s; the firmware hung (see --timeout)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(dir.path().join("stdout.txt")).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
    if !status.success() {
        bail!("QEMU exited with {status}\nfirmware output:\n{stdout}{stderr}");
    }
    let results = std::fs::read(dir.path().join("results.bin")).context("the firmware wrote no results.bin")?;
    Ok((stdout, results))
}

/// What `qemu` found: printed as JSON (these keys, alphabetical) or as text ([`Display`]).
#[derive(serde::Serialize)]
pub struct Report {
    accuracy: f64,
    activation: String,
    architecture: String,
    board: &'static str,
    build_seconds: f64,
    code_bytes: u64,
    cpu: &'static str,
    disagreements: usize,
    elf: String,
    first_disagreements: Vec<usize>,
    flash_budget_bytes: u64,
    flash_bytes: u64,
    images: usize,
    instructions_max: f64,
    instructions_min: f64,
    instructions_per_inference: f64,
    instructions_per_tick: f64,
    kernel: &'static str,
    macs_per_inference: usize,
    model: String,
    model_bytes: usize,
    qemu_seconds: f64,
    ram_budget_bytes: u64,
    ram_bytes: u64,
    score_mismatches: usize,
    scratch_bytes: usize,
    /// Counted in Thumb-2 code only: Armv6-M's 16-bit code (and its literal pools) can hold
    /// the same halfword patterns.
    smlad_in_code: Option<usize>,
    stack_bytes: u64,
    static_ram_bytes: u64,
    weights_bytes: u64,
    /// Only in the text.
    #[serde(skip)]
    board_kind: Board,
    #[serde(skip)]
    net_activation: infer_core::Activation,
    /// What the test set holds: "images", or "examples" of a table.
    #[serde(skip)]
    noun: &'static str,
}

impl Report {
    /// Whether the firmware fits the board's RAM.
    fn fits(&self) -> bool {
        self.ram_bytes <= self.ram_budget_bytes
    }

    /// Whether every prediction and score equals the host's, in the board's RAM.
    fn ok(&self) -> bool {
        self.disagreements == 0 && self.score_mismatches == 0 && self.fits()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (arch, count) = (&self.architecture, self.images);
        writeln!(f, "model          {} ({arch}, {:?}, int8)", self.model, self.net_activation)?;
        writeln!(f, "board          {}, firmware {}", self.board_kind.describe(), self.elf)?;
        writeln!(
            f,
            "{:15}{count} in {:.1} s of QEMU (build {:.1} s)",
            self.noun, self.qemu_seconds, self.build_seconds
        )?;
        writeln!(f, "accuracy       {:.2}%", 100.0 * self.accuracy)?;
        let first = &self.first_disagreements[..self.disagreements.min(5)];
        let first = if first.is_empty() { String::new() } else { format!(" (first: {first:?})") };
        writeln!(
            f,
            "agreement      {} of {count} predictions differ from infer-core on the host{first}; {} score vectors differ",
            self.disagreements, self.score_mismatches
        )?;
        writeln!(
            f,
            "flash          {} bytes: {} of code and constants + {} of model (budget {})",
            self.flash_bytes, self.code_bytes, self.weights_bytes, self.flash_budget_bytes
        )?;
        writeln!(
            f,
            "RAM            {} bytes: {} static + {} stack high-water, of which {} scratch (budget {})",
            self.ram_bytes, self.static_ram_bytes, self.stack_bytes, self.scratch_bytes, self.ram_budget_bytes
        )?;
        writeln!(
            f,
            "instructions   {:.0} per inference (min {:.0}, max {:.0}); {:.2} per multiply-accumulate of the dense layers ({}); kernel {}",
            self.instructions_per_inference,
            self.instructions_min,
            self.instructions_max,
            self.instructions_per_inference / self.macs_per_inference as f64,
            self.macs_per_inference,
            self.kernel
        )
    }
}

/// The int8 model at `path` (canonical), as firmware holds it.
fn load_model(path: &Path) -> Result<(PathBuf, &'static [u8], Int8Model<'static>)> {
    let model = std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    let blob = crate::blob::read_aligned(&model)?;
    let net = Int8Model::from_bytes(blob).map_err(|e| match e {
        infer_core::Error::WrongQuantization { .. } => anyhow::anyhow!(
            "{} is an f32 model; the firmware runs int8 models (`trainer export MODEL --quant int8`)",
            model.display()
        ),
        e => anyhow::anyhow!("{}: {e}", model.display()),
    })?;
    Ok((model, blob, net))
}

/// A firmware image built and run on the board.
struct Ran {
    /// The ELF the build wrote.
    built: PathBuf,
    sizes: ElfSizes,
    trailer: Trailer,
    /// One record per image: class, scores, ticks.
    results: Vec<u8>,
    build_seconds: f64,
    qemu_seconds: f64,
}

/// Builds the firmware for `board` with the model at `model` (whose bytes are `blob`)
/// embedded, checks that it fits the board's flash, and runs it on `images`.
fn build_and_run(args: &Args, model: &Path, blob: &[u8], images: &[u8]) -> Result<Ran> {
    let tc = toolchain()?;
    let firmware_dir = std::fs::canonicalize(&args.firmware_dir)
        .with_context(|| format!("the firmware crate {} (see --firmware-dir)", args.firmware_dir.display()))?;
    // Other runs may build this firmware for this board at the same time, in the same
    // folder: one at a time, until the ELF is copied.
    let building = lock_build(&firmware_dir, args.board)?;
    let started = Instant::now();
    let built = match args.firmware {
        Firmware::Rust => build(&tc, &firmware_dir, model, args.board)?,
        Firmware::C => build_c(&tc, &firmware_dir, blob, args.board)?,
    };
    let build_seconds = started.elapsed().as_secs_f64();
    // A private copy, made under the lock; its embedded model is checked to be this one.
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let elf = work.path().join("firmware.elf");
    std::fs::copy(&built, &elf).with_context(|| format!("copying {}", built.display()))?;
    drop(building);
    let sizes = elf_sizes(&elf, args.firmware.model_symbol())?;
    ensure!(
        sizes.model.get(..blob.len()) == Some(blob),
        "the firmware ELF does not embed {} (another build replaced it meanwhile?); run again",
        model.display()
    );
    let (flash_budget, _) = args.board.memory();
    ensure!(
        sizes.flash <= flash_budget,
        "the firmware takes {} bytes of flash, the board has {flash_budget}",
        sizes.flash
    );
    let started = Instant::now();
    let (stdout, results) = run_qemu(&tc, args.board, &elf, images, Duration::from_secs(args.timeout))?;
    let qemu_seconds = started.elapsed().as_secs_f64();
    let trailer = parse_trailer(&stdout)?;
    Ok(Ran { built, sizes, trailer, results, build_seconds, qemu_seconds })
}

/// The firmware's results against infer-core's on the host, image by image.
#[derive(Default)]
struct Tally {
    correct: usize,
    differing: Vec<usize>,
    score_mismatches: usize,
    /// SysTick ticks of each inference.
    ticks: Vec<f64>,
}

/// The firmware's input file of the first `count` examples of `test`: their bytes, or for a
/// model with an input quantizer their features as little-endian f32.
fn inputs(net: &Int8Model<'_>, test: &Split, count: usize) -> Result<Vec<u8>> {
    let w = test.width;
    if net.extras().has_input_quantizer() {
        return Ok(test.values[..count * w].iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    ensure!(!test.pixels.is_empty(), "the int8 model takes bytes; the data is real-valued features");
    Ok(test.pixels[..count * w].to_vec())
}

/// Runs `net` on the host over the first examples of `test` and compares each result with
/// the firmware's record of it.
fn compare(net: &Int8Model<'_>, test: &Split, results: &[u8]) -> Result<Tally> {
    let classes = net.architecture().classes();
    let record = 8 + 4 * classes;
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::for_model(net)?;
    let mut scores = vec![0i32; classes];
    let mut tally = Tally::default();
    let features = net.extras().has_input_quantizer();
    for (i, record) in results.chunks_exact(record).enumerate() {
        let w = test.width;
        let class = match features {
            true => net.predict_features(&test.values[i * w..][..w], &mut scratch, &mut scores)?,
            false => net.predict(&test.pixels[i * w..][..w], &mut scratch, &mut scores)?,
        };
        let labels = &test.labels;
        let fw_class = record[0] as usize;
        let fw_scores: Vec<i32> =
            record[4..4 + 4 * classes].chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let t = &record[record.len() - 4..];
        tally.ticks.push(f64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]])));
        tally.correct += usize::from(fw_class == labels[i] as usize);
        if fw_class != class {
            tally.differing.push(i);
        }
        tally.score_mismatches += usize::from(fw_scores != scores);
    }
    Ok(tally)
}

/// Builds, runs and compares; `Ok(false)` when any prediction or score differs from the host.
pub fn run(args: Args) -> Result<bool> {
    let (model, blob, net) = load_model(&args.model)?;
    let arch = net.architecture();
    let record = 8 + 4 * arch.classes();
    let data = data_of_model(&model, &args.data, args.seed)?.open()?;
    ensure!(
        arch.inputs() == data.schema.inputs && arch.classes() == data.schema.classes(),
        "{}: a {arch} network, not one for {} ({} inputs, {} classes); pass the data it was trained on with --data",
        model.display(),
        data.schema.name,
        data.schema.inputs,
        data.schema.classes()
    );
    let noun = data.schema.noun();
    let test = data.test;
    let count = args.count.unwrap_or(test.len()).min(test.len());
    ensure!(count > 0, "--count must be at least 1");
    let ran = build_and_run(&args, &model, blob, &inputs(&net, &test, count)?)?;
    let (trailer, sizes) = (&ran.trailer, &ran.sizes);
    ensure!(
        trailer.images == count && ran.results.len() == count * record,
        "the firmware classified {} images and wrote {} bytes, expected {count} and {}",
        trailer.images,
        ran.results.len(),
        count * record
    );
    ensure!(trailer.calibration_ticks > 0, "SysTick did not count (is QEMU run with -icount?)");
    let per_tick = trailer.calibration_instructions as f64 / trailer.calibration_ticks as f64;
    let tally = compare(&net, &test, &ran.results)?;
    let mean_ticks = tally.ticks.iter().sum::<f64>() / count as f64;
    let min_ticks = tally.ticks.iter().copied().fold(f64::INFINITY, f64::min);
    let max_ticks = tally.ticks.iter().copied().fold(0.0, f64::max);
    let (flash_budget, ram_budget) = args.board.memory();
    let report = Report {
        accuracy: tally.correct as f64 / count as f64,
        activation: format!("{:?}", net.activation()).to_lowercase(),
        architecture: arch.to_string(),
        board: args.board.machine(),
        build_seconds: ran.build_seconds,
        code_bytes: sizes.flash - sizes.weights,
        cpu: args.board.cpu(),
        disagreements: tally.differing.len(),
        elf: ran.built.display().to_string(),
        first_disagreements: tally.differing.iter().take(10).copied().collect(),
        flash_budget_bytes: flash_budget,
        flash_bytes: sizes.flash,
        images: count,
        instructions_max: (max_ticks * per_tick).round(),
        instructions_min: (min_ticks * per_tick).round(),
        instructions_per_inference: (mean_ticks * per_tick).round(),
        instructions_per_tick: per_tick,
        kernel: args.board.kernel(),
        macs_per_inference: arch.macs(),
        model: model.display().to_string(),
        model_bytes: blob.len(),
        qemu_seconds: ran.qemu_seconds,
        ram_budget_bytes: ram_budget,
        ram_bytes: sizes.static_ram + trailer.stack_bytes,
        score_mismatches: tally.score_mismatches,
        scratch_bytes: net.scratch_bytes(),
        smlad_in_code: (args.board == Board::Mps2An386).then_some(sizes.smlad),
        stack_bytes: trailer.stack_bytes,
        static_ram_bytes: sizes.static_ram,
        weights_bytes: sizes.weights,
        board_kind: args.board,
        net_activation: net.activation(),
        noun,
    };
    print(&report, args.json)?;
    Ok(report.ok())
}

/// Prints `report` as JSON or as text (with what failed, on stderr).
fn print(report: &Report, json: bool) -> Result<()> {
    if json {
        return runio::out::emit(&format!("{}\n", serde_json::to_string_pretty(report)?));
    }
    if !report.fits() {
        runio::note!("the firmware used {} bytes of RAM, the board has {}", report.ram_bytes, report.ram_budget_bytes);
    }
    if report.disagreements + report.score_mismatches > 0 {
        runio::note!("the firmware's predictions differ from the host's");
    }
    runio::out::emit(&report.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_smlad_encodings_only() {
        // smlad r0, r1, r2, r3 = fb21 3002; smuad r0, r1, r2 = fb21 f002; smladx = fb21 3012.
        let code = [0xfb21u16, 0x3002, 0xfb21, 0xf002, 0xfb21, 0x3012, 0xbf00];
        let bytes: Vec<u8> = code.iter().flat_map(|h| h.to_le_bytes()).collect();
        assert_eq!(count_smlad(&bytes), 1);
    }

    #[test]
    fn trailer_fields_and_errors() {
        let t = parse_trailer(
            "hello\nfirmware images=3 calibration_instructions=2000000 calibration_ticks=50000 stack_bytes=5000\n",
        )
        .unwrap();
        assert_eq!((t.images, t.calibration_ticks, t.stack_bytes), (3, 50_000, 5000));
        let e = parse_trailer("firmware error: short read from inputs.bin\n").err().unwrap();
        assert!(e.to_string().contains("short read"));
        assert!(parse_trailer("firmware images=3 stack_bytes=1\n").is_err());
    }
}
