//! Standard output as the command-line tools write it.

use anyhow::{Context, Result};

/// Prints `text` on stdout. A reader that went away (`| head`) is not an error: the rest is
/// simply not printed.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}

/// Prints a line on stderr, as `eprintln!` does, except that a stream that went away
/// (`2>&1 | head -1`) ends the messages, not the program: a run goes on to finish.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::out::note_line(format_args!($($arg)*))
    };
}

/// What [`note!`] prints; write errors are dropped (there is nowhere left to report them).
pub fn note_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `path` as one word of a shell command line: as it is when it holds only characters no
/// shell treats specially, else in single quotes. Lossy for paths that are not UTF-8.
pub fn shell_word(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./+,:@%".contains(c);
    match !text.is_empty() && text.chars().all(plain) {
        true => text.into_owned(),
        false => format!("'{}'", text.replace('\'', r"'\''")),
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;
    use std::path::Path;

    #[test]
    fn a_path_becomes_one_shell_word() {
        assert_eq!(shell_word(Path::new("runs/20261202-101010")), "runs/20261202-101010");
        assert_eq!(shell_word(Path::new("my runs/it's")), r"'my runs/it'\''s'");
        assert_eq!(shell_word(Path::new("$HOME;rm")), "'$HOME;rm'");
    }
}
