//! `redrive rekey --data-dir DIR --encryption-key-file NEW --encryption-key-file OLD…`: on a
//! stopped embedded store, seals every job body, attribute value and error text that an older
//! key sealed under the first key, and deletes the log segments that held the old forms, so the
//! old key can be retired. Offline, because the rewrite needs the whole log to itself; the
//! directory's lock file refuses a store a server holds.

use std::path::PathBuf;

use anyhow::{bail, Context};
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, FsStorage, Store};

#[derive(clap::Args, Debug)]
pub struct RekeyArgs {
    /// Data directory of the embedded store (its server must be stopped)
    #[arg(long, env = "REDRIVE_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// The key files, as `serve` takes them: the first seals, the others open what they sealed
    #[arg(
        long = "encryption-key-file",
        env = "REDRIVE_ENCRYPTION_KEY_FILES",
        value_delimiter = ',',
        value_name = "FILE",
        required = true
    )]
    encryption_key_files: Vec<PathBuf>,
}

pub fn run(args: RekeyArgs, json: bool) -> anyhow::Result<()> {
    if !args.data_dir.is_dir() {
        bail!("{} is not a directory", args.data_dir.display());
    }
    let keys = crate::serve::load_keys(&args.encryption_key_files)?.expect("required = true");
    let storage = FsStorage::new(&args.data_dir)
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let mut store = Store::open(Box::new(storage), Durability::Sync, SystemClock.now_ms())
        .with_context(|| format!("reading the store in {}", args.data_dir.display()))?;
    let changed = store
        .rewrite_all(&mut |text| keys.reseal(text))
        .context("rewriting the store (it is unchanged where not yet rewritten)")?;
    drop(store);
    if json {
        println!("{}", serde_json::json!({ "rekeyed": changed, "key": keys.current_id() }));
    } else {
        println!("{changed} values now sealed with key {}", keys.current_id());
    }
    Ok(())
}
