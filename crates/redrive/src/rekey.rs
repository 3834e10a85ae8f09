//! `redrive rekey --encryption-key-file NEW --encryption-key-file OLD…`: seals every job body,
//! attribute value and error text that an older key sealed under the first key, so the old key
//! can be retired.
//!
//! - `--data-dir DIR`: a stopped embedded store. The log segments that held the old forms are
//!   deleted. Offline, because the rewrite needs the whole log to itself; the directory's lock
//!   file refuses a store a server holds.
//! - `--store postgres://…`: a PostgreSQL database, live (servers may keep running), in
//!   batches of rows, each row compare-and-set against what was read so that no concurrent
//!   ack or fail is lost (`redrive_postgres::rekey`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, FsStorage, Store};
use redrive_server::at_rest::Keyring;

#[derive(clap::Args, Debug)]
pub struct RekeyArgs {
    /// Data directory of the embedded store (its server must be stopped)
    #[arg(long, env = "REDRIVE_DATA_DIR", value_name = "DIR", required_unless_present = "store")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL store, `postgres://USER@HOST:PORT/DB`, instead (servers may be running);
    /// --data-dir is then not used
    #[arg(long, env = "REDRIVE_STORE", hide_env_values = true, value_name = "URL")]
    store: Option<String>,
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
    let keys = crate::serve::load_keys(&args.encryption_key_files)?.expect("required = true");
    let changed = match (&args.store, &args.data_dir) {
        (Some(url), _) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("store must be a postgres://USER@HOST:PORT/DB URL, not {url:?}");
            }
            let reseal = |text: &str| keys.reseal(text);
            crate::cli::runtime()?.block_on(redrive_postgres::rekey::rekey(url, &reseal)).context(
                "rekeying the database (rows already rewritten stay so: run it again to \
                     finish)",
            )?
        }
        (None, Some(dir)) => rekey_embedded(dir, &keys)?,
        (None, None) => bail!("give --data-dir or --store"),
    };
    if json {
        println!("{}", serde_json::json!({ "rekeyed": changed, "key": keys.current_id() }));
    } else {
        println!("{changed} values now sealed with key {}", keys.current_id());
    }
    Ok(())
}

fn rekey_embedded(dir: &Path, keys: &Keyring) -> anyhow::Result<u64> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let storage = FsStorage::new(dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut store = Store::open(Box::new(storage), Durability::Sync, SystemClock.now_ms())
        .with_context(|| format!("reading the store in {}", dir.display()))?;
    store
        .rewrite_all(&mut |text| keys.reseal(text))
        .context("rewriting the store (it is unchanged where not yet rewritten)")
}
