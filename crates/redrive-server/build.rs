//! Embeds the dashboard's files (`ui/`) into the binary: writes `ui_files.rs`, a table of
//! `(path, bytes)` that `src/ui.rs` serves, so users get the dashboard without a build step of
//! their own and the files cannot drift from the binary that serves them.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(&path, root, out);
        } else {
            let rel =
                path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("ui");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        table.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?}).as_slice()),\n",
            path.display().to_string()
        ));
    }
    table.push(']');
    let out = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("ui_files.rs");
    fs::write(out, table).expect("OUT_DIR is writable");
}
